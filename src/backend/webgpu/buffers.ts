/**
 * Buffers of the WebGPU backend: {@link GpuBuf} (a buffer, or a view into a group's chunk) and the
 * {@link BufferPool} they come from. The pool is keyed by size class (powers of two, with quarter steps above
 * 4 KiB), so the many same-sized activations and gradients of a training step are recycled instead of
 * created; pooled buffers are kept until the backend is disposed.
 *
 * Two device limits shape them: a buffer holds at most `maxBufferSize` bytes, and one binding of a kernel
 * sees at most `maxStorageBufferBindingSize` bytes of it (128 MiB by default, less than GPT-2's 154 MB
 * token embedding). A buffer may be larger than a binding: the ops that meet such a tensor bind it in
 * {@link windowOf windows} (`split.ts`); every other op gets a clear error from the dispatch.
 * @module
 */

import { type Buf, type DType, quarterStepClass } from "../backend.ts";

// WebGPU flag values (numeric, so that they work before Dawn's globals are installed).
export const USAGE_MAP_READ = 0x0001;
export const USAGE_COPY_SRC = 0x0004;
export const USAGE_COPY_DST = 0x0008;
export const USAGE_UNIFORM = 0x0040;
export const USAGE_STORAGE = 0x0080;
export const MAP_MODE_READ = 0x0001;

/**
 * A buffer on the GPU. `buffer` is null once freed. A view (a buffer of a `BufGroup`) lives at byte
 * `offset` of its chunk `owner`'s GPU buffer and is freed with it.
 */
export class GpuBuf implements Buf {
  #buffer: GPUBuffer | null;
  constructor(
    readonly length: number,
    readonly dtype: DType,
    buffer: GPUBuffer | null,
    readonly label: string,
    readonly offset = 0,
    readonly owner: GpuBuf | null = null,
  ) {
    this.#buffer = buffer;
  }

  get buffer(): GPUBuffer | null {
    return this.owner ? this.owner.buffer : this.#buffer;
  }

  set buffer(b: GPUBuffer | null) {
    this.#buffer = b;
  }

  /** The bytes a binding of this buffer covers: the whole GPU buffer, or the view's 16-byte-rounded range. */
  get end(): number {
    return this.owner ? this.offset + byteSize(this.length) : this.buffer?.size ?? 0;
  }
}

/**
 * A window of `length` elements of `b` starting at element `first`: bound as its own range of `b`'s GPU
 * buffer (byte offset `b.offset + 4·first`, which must be a multiple of minStorageBufferOffsetAlignment),
 * freed with `b`. How a kernel sees one binding-sized part of a tensor larger than a binding.
 */
export function windowOf(b: GpuBuf, first: number, length: number, label = b.label): GpuBuf {
  if (first < 0 || length < 0 || first + length > b.length) {
    throw new Error(`Cannot bind "${b.label}": elements ${first} … ${first + length} are outside its ${b.length}`);
  }
  return new GpuBuf(length, b.dtype, null, label, b.offset + 4 * first, b.owner ?? b);
}

/** Whether `x` and `y` are the same memory (the same buffer, or the same view of it). */
export function sameRange(x: GpuBuf, y: GpuBuf): boolean {
  return x.buffer === y.buffer && x.offset === y.offset;
}

/** Bytes a buffer of `length` 4-byte elements takes (at least 16, a multiple of 16). */
export function byteSize(length: number): number {
  return Math.max(16, Math.ceil((length * 4) / 16) * 16);
}

/** The pool's size class for `bytes`: the next power of two up to 4 KiB, then the next quarter step. */
export function sizeClass(bytes: number): number {
  return bytes <= 4096 ? 2 ** Math.ceil(Math.log2(bytes)) : quarterStepClass(bytes);
}

/**
 * Every storage buffer the backend creates: pooled ones by size class, exact-size ones (the chunks of a
 * group), and the 16-byte placeholders bound where a kernel variant ignores a binding.
 */
export class BufferPool {
  readonly #device: GPUDevice;
  readonly #pool = new Map<number, GPUBuffer[]>();
  readonly #live = new Set<GPUBuffer>();
  readonly #placeholders = new Map<number, GPUBuffer>();
  /**
   * The most bytes one binding holds for the backend's splitting decisions: the device's
   * maxStorageBufferBindingSize (and maxBufferSize), or less where the backend was asked to split as if
   * bindings were smaller (`WebGpuBackendOptions.maxBindingBytes`).
   */
  readonly maxBindingBytes: number;
  /** The device's maxStorageBufferBindingSize: a whole buffer bigger than this is bound by its used range. */
  readonly deviceBindingBytes: number;
  /** The device's maxBufferSize: the largest buffer it creates. */
  readonly maxBufferBytes: number;

  /** `maxBindingBytes`: the splitting limit (at most the device's; default the device's). */
  constructor(device: GPUDevice, maxBindingBytes?: number) {
    this.#device = device;
    this.maxBufferBytes = device.limits.maxBufferSize;
    this.deviceBindingBytes = Math.min(device.limits.maxStorageBufferBindingSize, this.maxBufferBytes);
    this.maxBindingBytes = Math.min(maxBindingBytes ?? Infinity, this.deviceBindingBytes);
  }

  /** A buffer from the pool (contents undefined) or a new one (zeros). */
  acquire(length: number, dtype: DType, label: string): GpuBuf {
    if (!Number.isInteger(length) || length < 0) {
      throw new Error(`Cannot allocate WebGPU buffer "${label}": invalid length ${length}`);
    }
    const bytes = byteSize(length);
    this.checkSize(bytes, label, `${length} × ${dtype}`);
    // the size class, but never past a limit the buffer itself stays under
    const limit = bytes <= this.deviceBindingBytes ? this.deviceBindingBytes : this.maxBufferBytes;
    const size = Math.min(sizeClass(bytes), Math.floor(limit / 16) * 16);
    const pooled = this.#pool.get(size)?.pop();
    if (pooled) return new GpuBuf(length, dtype, pooled, label);
    return new GpuBuf(length, dtype, this.exact(size, label), label);
  }

  /**
   * Throw, naming the tensor, when `bytes` exceed the device's maxBufferSize: such a tensor would have to be
   * kept in several buffers, which this backend does not do (it splits bindings of one buffer only).
   */
  checkSize(bytes: number, label: string, what: string): void {
    if (bytes > this.maxBufferBytes) {
      throw new Error(
        `Cannot allocate WebGPU buffer "${label}": ${bytes} bytes (${what}) exceed the device's maxBufferSize of ` +
          `${this.maxBufferBytes} bytes (a tensor is split into several bindings of one buffer, never into several ` +
          "buffers: use a smaller batch or sequence length)",
      );
    }
  }

  /** A new storage buffer of exactly `size` bytes (zeros), counted in {@link stats} until disposed. */
  exact(size: number, label: string): GPUBuffer {
    this.checkSize(size, label, `${size / 4} × f32`);
    const buffer = this.#device.createBuffer({
      label,
      size,
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
    });
    this.#live.add(buffer);
    return buffer;
  }

  /** Return a buffer to the pool; a group's views are freed with their chunk, a freed buffer is ignored. */
  release(buf: Buf): void {
    const b = buf as GpuBuf;
    if (!b.buffer || b.owner) return;
    const size = b.buffer.size;
    let list = this.#pool.get(size);
    if (!list) this.#pool.set(size, list = []);
    list.push(b.buffer);
    b.buffer = null;
  }

  /** A 16-byte placeholder for binding `i` (one per index, so placeholders never alias each other). */
  placeholder(i: number): GPUBuffer {
    let b = this.#placeholders.get(i);
    if (!b) {
      b = this.#device.createBuffer({ label: `placeholder ${i}`, size: 16, usage: USAGE_STORAGE });
      this.#placeholders.set(i, b);
    }
    return b;
  }

  /** Bytes and count of the storage buffers created (in use or pooled; placeholders not counted). */
  get stats(): { allocatedBytes: number; buffers: number } {
    let allocatedBytes = 0;
    for (const b of this.#live) allocatedBytes += b.size;
    return { allocatedBytes, buffers: this.#live.size };
  }

  /** Destroy every buffer. */
  destroy(): void {
    for (const b of this.#live) b.destroy();
    this.#live.clear();
    this.#pool.clear();
    for (const b of this.#placeholders.values()) b.destroy();
  }
}
