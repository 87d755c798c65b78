/**
 * The CPU backends' buffers: {@link CpuBuf}, a plain typed array, and {@link CpuMemory}, the memory half of
 * the {@link Backend} interface (allocation from a pool of freed arrays, upload, read, write, copy, free),
 * which the reference backend (reference.ts) extends with the ops; `f32` and `i32` check an op's buffers.
 * @module
 */

import {
  type Backend,
  type Buf,
  type BufGroup,
  type DType,
  groupLayout,
  groupViewLabel,
  quarterStepClass,
} from "../backend.ts";

/** A CPU buffer: a plain typed array. `data` is the live storage (not a copy). */
export class CpuBuf implements Buf {
  readonly dtype: DType;
  readonly label: string;
  #data: Float32Array | Int32Array;
  #freed = false;

  /**
   * `data` may be a view of a larger pooled array, `backing` (see {@link CpuMemory.alloc}); the backend
   * takes `backing` back when the buffer is freed. A buffer of a group (`allocGroup`) is a view of its
   * chunk `owner` and is freed with it.
   */
  constructor(
    data: Float32Array | Int32Array,
    label = "buffer",
    readonly backing?: Float32Array | Int32Array,
    readonly owner?: CpuBuf,
  ) {
    this.#data = data;
    this.dtype = data instanceof Int32Array ? "i32" : "f32";
    this.label = label;
  }

  /** Number of elements. */
  get length(): number {
    return this.#data.length;
  }

  /** Whether the buffer (or the chunk it is a view of) has been freed. */
  get freed(): boolean {
    return this.#freed || (this.owner?.freed ?? false);
  }

  /** The live storage. Throws once the buffer has been freed (a use-after-free in the caller). */
  get data(): Float32Array | Int32Array {
    if (this.freed) throw new Error(`Cannot use CPU buffer: "${this.label}" was freed`);
    return this.#data;
  }

  /** Marks the buffer freed; later use throws. Returns false when it already was (a double free). */
  release(): boolean {
    const was = this.#freed;
    this.#freed = true;
    return !was;
  }
}

/** Arrays shorter than this are allocated fresh (cheap); longer ones go through the pool. */
const POOL_MIN = 16384;
/** The most bytes the pool keeps for reuse; beyond that freed arrays are left to the garbage collector. */
const POOL_MAX_BYTES = 2 ** 31;

/** The typed array behind a CPU buffer (the live storage, not a copy). Throws for another backend's buffer. */
export function cpuData(buf: Buf): Float32Array | Int32Array {
  if (!(buf instanceof CpuBuf)) throw new Error("Cannot use buffer on the CPU backend: it belongs to another backend");
  return buf.data;
}

/**
 * The float32 data of `buf` (`what` names it in the error of an i32 buffer). The ops' sizes are checked before
 * they run, by `arg_checks.ts`.
 */
export function f32(buf: Buf, what: string): Float32Array {
  const d = cpuData(buf);
  if (!(d instanceof Float32Array)) throw new Error(`Cannot run CPU op: ${what} must be f32, got i32`);
  return d;
}

/** The int32 data of `buf` (see {@link f32}). */
export function i32(buf: Buf, what: string): Int32Array {
  const d = cpuData(buf);
  if (!(d instanceof Int32Array)) throw new Error(`Cannot run CPU op: ${what} must be i32, got f32`);
  return d;
}

/** The methods of {@link Backend} that are not ops. */
type MemoryOp = "alloc" | "allocUninit" | "allocGroup" | "upload" | "write" | "read" | "zero" | "copy" | "free";

/**
 * A CPU backend's buffers: everything of {@link Backend} but the ops. Everything runs at once on the calling
 * thread, so `sync()` has nothing to wait for.
 */
export class CpuMemory implements Pick<Backend, MemoryOp | "sync" | "dispose"> {
  /**
   * A zero-filled buffer. Arrays of at least {@link POOL_MIN} elements come from a pool of freed ones (by
   * dtype and size class, up to a quarter larger, handed out as an exact-length view): a training step
   * allocates and frees the same activations every time, and reusing them saves the page faults and
   * garbage collections of fresh gigabyte-sized allocations (≈ 5 % of a real-shape step).
   */
  alloc(length: number, dtype: DType = "f32", label?: string): Buf {
    const buf = this.allocUninit(length, dtype, label);
    this.zeroArray(cpuData(buf));
    return buf;
  }

  /** As {@link alloc}, without the zeroing: a pooled array keeps what it held (see `Backend.allocUninit`). */
  allocUninit(length: number, dtype: DType = "f32", label?: string): Buf {
    if (!Number.isInteger(length) || length < 0) {
      throw new Error(`Cannot allocate CPU buffer${label ? ` "${label}"` : ""}: bad length ${length}`);
    }
    if (length < POOL_MIN) return new CpuBuf(this.newArray(length, dtype), label);
    const backing = this.#fromPool(length, dtype);
    return new CpuBuf(backing.subarray(0, length), label, backing);
  }

  /**
   * One array holding every buffer, 16-element aligned (64 bytes, a cache line): one chunk, since an array
   * has no binding limit. See `Backend.allocGroup`.
   */
  allocGroup(lengths: readonly number[], label = "group", names?: readonly string[]): BufGroup {
    const layout = groupLayout(lengths, 16, Number.MAX_SAFE_INTEGER, label, names);
    const c = layout.chunks[0];
    if (!c) return { views: [], chunks: [] };
    const whole = new CpuBuf(this.newArray(c.length, "f32"), label);
    const views = lengths.map((n, i) => {
      const at = layout.offsets[i]!;
      const name = groupViewLabel(label, names, i);
      return new CpuBuf((whole.data as Float32Array).subarray(at, at + n), name, undefined, whole);
    });
    return { views, chunks: [{ buf: whole, first: 0, count: views.length }] };
  }

  upload(data: Float32Array | Int32Array, label?: string): Buf {
    if (data.length < POOL_MIN) {
      const copy = this.newArray(data.length, data instanceof Int32Array ? "i32" : "f32");
      copy.set(data);
      return new CpuBuf(copy, label);
    }
    const backing = this.#fromPool(data.length, data instanceof Int32Array ? "i32" : "f32");
    const view = backing.subarray(0, data.length);
    view.set(data);
    return new CpuBuf(view, label, backing);
  }

  /** A pooled array of `length`'s size class (contents undefined), or a new one. */
  #fromPool(length: number, dtype: DType): Float32Array | Int32Array {
    const cls = quarterStepClass(length);
    const arr = this.#pool.get(`${dtype}:${cls}`)?.pop();
    if (arr) {
      this.#pooledBytes -= arr.byteLength;
      return arr;
    }
    return this.newArray(cls, dtype);
  }

  /** A zeroed array (a subclass may put it on other memory: fast.ts's helper threads need shared memory). */
  protected newArray(length: number, dtype: DType): Float32Array | Int32Array {
    const buf = new ArrayBuffer(4 * length);
    return dtype === "i32" ? new Int32Array(buf) : new Float32Array(buf);
  }

  /** arr.fill(0) (a subclass may do it faster on its own arrays). */
  protected zeroArray(arr: Float32Array | Int32Array): void {
    arr.fill(0);
  }

  readonly #pool = new Map<string, (Float32Array | Int32Array)[]>();
  #pooledBytes = 0;

  write(buf: Buf, data: Float32Array | Int32Array, offset = 0): void {
    const d = cpuData(buf);
    if (d.constructor !== data.constructor) {
      throw new Error(`Cannot write to CPU buffer: dtype differs (buffer ${buf.dtype}, data ${data.constructor.name})`);
    }
    if (offset < 0 || offset + data.length > d.length) {
      throw new Error(`Cannot write to CPU buffer: ${data.length} elements at ${offset} exceed length ${d.length}`);
    }
    d.set(data, offset);
  }

  read(buf: Buf): Promise<Float32Array | Int32Array> {
    return Promise.resolve(cpuData(buf).slice());
  }

  zero(buf: Buf): void {
    this.zeroArray(cpuData(buf));
  }

  copy(dst: Buf, src: Buf, length?: number, dstOffset = 0, srcOffset = 0): void {
    const d = cpuData(dst), s = cpuData(src);
    if (d.constructor !== s.constructor) throw new Error(`Cannot copy: dtypes differ (${src.dtype} to ${dst.dtype})`);
    const n = length ?? s.length - srcOffset;
    if (srcOffset < 0 || dstOffset < 0 || srcOffset + n > s.length || dstOffset + n > d.length) {
      throw new Error(
        `Cannot copy: ${n} elements from ${srcOffset} (of ${s.length}) to ${dstOffset} (of ${d.length}) out of range`,
      );
    }
    d.set(s.subarray(srcOffset, srcOffset + n), dstOffset);
  }

  free(buf: Buf): void {
    // a group's views are freed with their chunk
    if (!(buf instanceof CpuBuf) || buf.owner || !buf.release() || !buf.backing) return;
    const arr = buf.backing;
    if (this.#pooledBytes + arr.byteLength > POOL_MAX_BYTES) return; // let the GC have it
    const key = `${buf.dtype}:${arr.length}`;
    const list = this.#pool.get(key);
    if (list) list.push(arr);
    else this.#pool.set(key, [arr]);
    this.#pooledBytes += arr.byteLength;
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {
    this.#pool.clear();
    this.#pooledBytes = 0;
  }
}
