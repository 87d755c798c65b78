/**
 * The WebGPU backend: every {@link Backend} op as a dispatch of a hand-written WGSL kernel from
 * `kernels/` (read the kernel headers for the maths, bindings and dispatch layouts). The parts, in the
 * order a call meets them:
 * - `options.ts`: which matmul and attention kernels run, how often work is submitted;
 * - `ops.ts`, `matmul.ts` (the matmul policy: kernel choice, split-K, tuning), `attention.ts` (three
 *   training variants and the KV cache): each op checks its buffers and dispatches its kernels;
 * - `kernels.ts`: the registry of kernel files and entry points with their binding layouts;
 * - `buffers.ts`, `groups.ts`: buffers from a pool of size classes, and groups of views in a few chunks;
 * - `runtime.ts`: pipelines, bind groups, the uniform ring, recording and submitting.
 * `alloc` zero-fills with `clearBuffer` in the command stream, so reuse is ordered after earlier uses.
 * Nothing is read back except in `read()`.
 * @module
 */

import { installArgChecks } from "../arg_checks.ts";
import type { Backend, Buf, BufGroup, DType, MatmulArgs, OpArgs } from "../backend.ts";
import { requestGpuDevice } from "../gpu_device.ts";
import { GpuProfiler } from "../gpu_profiler.ts";
import { type MatmulCandidate, MatmulTuner, type TunedShape } from "../matmul_tuner.ts";
import type { KernelTime } from "../profile.ts";
import { Attention } from "./attention.ts";
import { byteSize, MAP_MODE_READ, USAGE_COPY_DST, USAGE_MAP_READ } from "./buffers.ts";
import { allocGroup } from "./groups.ts";
import { Matmuls } from "./matmul.ts";
import * as ops from "./ops.ts";
import {
  type AttentionKernel,
  checkMaxBindingBytes,
  type MatmulKernel,
  MAX_BATCH,
  parseFlushEvery,
  type WebGpuBackendOptions,
} from "./options.ts";
import { GpuRuntime } from "./runtime.ts";

/** What `WebGpuBackend.create` resolved from its options. */
interface Settings {
  matmul: MatmulKernel;
  attention: AttentionKernel;
  profile: boolean;
  flushEvery: number;
  flushRamp: boolean;
  forced: MatmulCandidate | null;
  maxBindingBytes: number | undefined;
}

/** The WebGPU implementation of {@link Backend}. Create with {@link WebGpuBackend.create}. */
export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly description: string;
  /** The matmul kernel this backend runs. */
  readonly matmulKernel: MatmulKernel;
  /** The training attention kernels this backend runs. */
  readonly attentionKernel: AttentionKernel;
  /** Dispatches recorded before a batch is submitted (`WebGpuBackendOptions.flushEvery`). */
  readonly flushEvery: number;
  /** Whether batches ramp up from 16 dispatches after each wait (`WebGpuBackendOptions.flushRamp`). */
  readonly flushRamp: boolean;
  readonly #rt: GpuRuntime;
  readonly #matmuls: Matmuls;
  readonly #attention: Attention;

  private constructor(device: GPUDevice, description: string, s: Settings) {
    const profiler = s.profile ? new GpuProfiler(device, MAX_BATCH) : null;
    const tuner = s.matmul === "tune" ? new MatmulTuner(new GpuProfiler(device, MAX_BATCH)) : null;
    this.description = description;
    this.matmulKernel = s.matmul;
    this.attentionKernel = s.attention;
    this.flushEvery = s.flushEvery;
    this.flushRamp = s.flushRamp;
    this.#rt = new GpuRuntime(device, {
      profiler,
      tuneTimer: tuner?.timer ?? null,
      flushEvery: s.flushEvery,
      flushRamp: s.flushRamp,
      maxBindingBytes: s.maxBindingBytes,
    });
    this.#matmuls = new Matmuls(this.#rt, s.matmul, tuner, s.forced);
    this.#attention = new Attention(this.#rt, s.attention);
    // every op's sizes and arguments checked before it records anything, as on the CPU
    installArgChecks(this);
  }

  /** Open a WebGPU device and build the backend; throws when no adapter is found. */
  static async create(opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    const maxBindingBytes = opts.maxBindingBytes !== undefined ? checkMaxBindingBytes(opts.maxBindingBytes) : undefined;
    const gpu = await requestGpuDevice(opts);
    if (!gpu) {
      throw new Error(
        opts.rejectSoftware
          ? "Cannot create WebGPU backend: no hardware adapter found (software adapters were rejected)"
          : "Cannot create WebGPU backend: no adapter found (navigator.gpu.requestAdapter() returned null)",
      );
    }
    const matmul = opts.matmul ?? "tiled";
    if (matmul === "tune" && !gpu.device.features.has("timestamp-query")) {
      gpu.device.destroy();
      throw new Error(
        `Cannot tune the matmul: the adapter (${gpu.description}) does not offer "timestamp-query" ` +
          `(use another matmul kernel, such as the default tiled)`,
      );
    }
    if (matmul === "large-f16" && !gpu.device.features.has("shader-f16")) {
      gpu.device.destroy();
      throw new Error(
        `Cannot use the "large-f16" matmul: the adapter (${gpu.description}) does not offer "shader-f16"`,
      );
    }
    const attention = opts.attention ?? "matmul";
    const flushEvery = opts.flushEvery !== undefined ? parseFlushEvery(opts.flushEvery) : MAX_BATCH;
    const flushRamp = opts.flushRamp ?? true;
    const suffix = (matmul === "tiled" ? "" : `, matmul ${matmul}`) +
      (attention === "matmul" ? "" : `, attention ${attention}`) +
      (flushEvery === MAX_BATCH ? "" : `, submits every ${flushEvery} dispatches`) +
      (flushRamp ? "" : ", no submit ramp");
    const profile = opts.profile ?? false;
    try {
      const desc = gpu.description + suffix + (profile ? ", profiling" : "");
      const forced = opts.matmulCandidate ?? null;
      const settings = { matmul, attention, profile, flushEvery, flushRamp, forced, maxBindingBytes };
      return new WebGpuBackend(gpu.device, desc, settings);
    } catch (e) {
      gpu.device.destroy();
      throw e;
    }
  }

  // ------------------------------------------------------------------ memory

  alloc(length: number, dtype: DType = "f32", label = "buffer"): Buf {
    const b = this.#rt.acquire(length, dtype, label);
    this.#rt.commands().clearBuffer(b.buffer!, 0, byteSize(length));
    return b;
  }

  upload(data: Float32Array | Int32Array, label = "upload"): Buf {
    const b = this.#rt.acquire(data.length, data instanceof Int32Array ? "i32" : "f32", label);
    this.#rt.flush(); // a pooled buffer may still be in use by recorded work
    this.#rt.device.queue.writeBuffer(b.buffer!, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  }

  allocGroup(lengths: readonly number[], label = "group", names?: readonly string[]): BufGroup {
    return allocGroup(this.#rt, lengths, label, names);
  }

  write(buf: Buf, data: Float32Array | Int32Array, offset = 0): void {
    const b = this.#rt.buf(buf, "write");
    const dtype = data instanceof Int32Array ? "i32" : "f32";
    if (dtype !== b.dtype) throw new Error(`Cannot write to "${b.label}": ${dtype} data into a ${b.dtype} buffer`);
    if (offset < 0 || offset + data.length > b.length) {
      throw new Error(`Cannot write to "${b.label}": ${data.length} elements at offset ${offset} exceed ${b.length}`);
    }
    this.#rt.flush(); // recorded work must see the old contents
    this.#rt.device.queue.writeBuffer(b.buffer!, b.offset + offset * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  async read(buf: Buf): Promise<Float32Array | Int32Array> {
    const b = this.#rt.buf(buf, "read");
    const bytes = byteSize(b.length);
    const staging = this.#rt.device.createBuffer({
      label: `read ${b.label}`,
      size: bytes,
      usage: USAGE_MAP_READ | USAGE_COPY_DST,
    });
    this.#rt.commands().copyBufferToBuffer(b.buffer!, b.offset, staging, 0, bytes);
    this.#rt.flush();
    try {
      await staging.mapAsync(MAP_MODE_READ);
    } catch (e) {
      this.#rt.throwIfFailed();
      throw e;
    }
    this.#rt.waited(); // the GPU has finished what the read needed: idle, or nearly
    const copy = staging.getMappedRange(0, bytes).slice(0, b.length * 4);
    staging.unmap();
    staging.destroy();
    this.#rt.throwIfFailed();
    return b.dtype === "i32" ? new Int32Array(copy) : new Float32Array(copy);
  }

  zero(buf: Buf): void {
    const b = this.#rt.buf(buf, "zero");
    this.#rt.commands().clearBuffer(b.buffer!, b.offset, byteSize(b.length));
  }

  copy(dst: Buf, src: Buf, length?: number, dstOffset = 0, srcOffset = 0): void {
    const d = this.#rt.buf(dst, "copy"), s = this.#rt.buf(src, "copy");
    const n = length ?? Math.min(d.length - dstOffset, s.length - srcOffset);
    if (n < 0 || srcOffset + n > s.length || dstOffset + n > d.length) {
      throw new Error(
        `Cannot copy "${s.label}" to "${d.label}": ${n} elements at ${srcOffset} → ${dstOffset} out of range`,
      );
    }
    if (n === 0) return;
    const enc = this.#rt.commands();
    if (d.buffer === s.buffer) {
      // copyBufferToBuffer forbids src = dst: go through a temporary.
      const tmp = this.#rt.acquire(n, s.dtype, "copy temporary");
      enc.copyBufferToBuffer(s.buffer!, s.offset + srcOffset * 4, tmp.buffer!, 0, n * 4);
      enc.copyBufferToBuffer(tmp.buffer!, 0, d.buffer!, d.offset + dstOffset * 4, n * 4);
      this.#rt.release(tmp);
    } else {
      enc.copyBufferToBuffer(s.buffer!, s.offset + srcOffset * 4, d.buffer!, d.offset + dstOffset * 4, n * 4);
    }
  }

  free(buf: Buf): void {
    this.#rt.release(buf);
  }

  /**
   * GPU memory this backend holds: every storage buffer it created, in use or waiting in the pool. Pooled
   * buffers are kept until `dispose`, so `allocatedBytes` is also the high-water mark (the uniform ring,
   * placeholders and transient read-back staging buffers are not counted). `dispatches` and `submits`
   * count the compute dispatches recorded and the command buffers submitted since the backend was made.
   */
  get stats(): { allocatedBytes: number; buffers: number; dispatches: number; submits: number } {
    return { ...this.#rt.pool.stats, ...this.#rt.counts };
  }

  /**
   * The most bytes one binding holds (maxStorageBufferBindingSize, or the lower `maxBindingBytes` option):
   * a tensor larger than this is bound in several windows by the ops that split (`split.ts`).
   */
  get maxBindingBytes(): number {
    return this.#rt.pool.maxBindingBytes;
  }

  /** The largest buffer this device creates, in bytes (maxBufferSize): no tensor may be larger. */
  get maxBufferBytes(): number {
    return this.#rt.pool.maxBufferBytes;
  }

  /** Whether dispatches are being timed (the `profile` option, `GPT2_SFT_PROFILE=1`). */
  get profiling(): boolean {
    return this.#rt.profiler !== null;
  }

  /**
   * GPU milliseconds per kernel since the last reset, largest first (waits for the queued work). Matmuls
   * are keyed by shape and layout. Throws when the backend was not created with profiling on.
   */
  async profile(opts: { reset?: boolean } = {}): Promise<KernelTime[]> {
    const profiler = this.#rt.profiler;
    if (!profiler) throw new Error("Cannot report a GPU profile: the backend was created without `profile`");
    await this.sync();
    const rows = await profiler.report();
    if (opts.reset) profiler.reset();
    return rows;
  }

  sync(): Promise<void> {
    return this.#rt.sync();
  }

  dispose(): void {
    this.#rt.dispose();
  }

  // ------------------------------------------------------------------ elementwise

  add(args: OpArgs<"add">): void {
    ops.add(this.#rt, args);
  }

  scale(args: OpArgs<"scale">): void {
    ops.scale(this.#rt, args);
  }

  geluForward(args: OpArgs<"geluForward">): void {
    ops.geluForward(this.#rt, args);
  }

  geluBackward(args: OpArgs<"geluBackward">): void {
    ops.geluBackward(this.#rt, args);
  }

  dropoutForward(args: OpArgs<"dropoutForward">): void {
    ops.dropoutForward(this.#rt, args);
  }

  dropoutBackward(args: OpArgs<"dropoutBackward">): void {
    ops.dropoutBackward(this.#rt, args);
  }

  // ------------------------------------------------------------------ embedding

  embeddingForward(args: OpArgs<"embeddingForward">): void {
    ops.embeddingForward(this.#rt, args);
  }

  embeddingBackward(args: OpArgs<"embeddingBackward">): void {
    ops.embeddingBackward(this.#rt, args);
  }

  // ------------------------------------------------------------------ layernorm

  layernormForward(args: OpArgs<"layernormForward">): void {
    ops.layernormForward(this.#rt, args);
  }

  layernormBackward(args: OpArgs<"layernormBackward">): void {
    ops.layernormBackward(this.#rt, args);
  }

  // ------------------------------------------------------------------ matmul

  matmul(args: MatmulArgs): void {
    this.#matmuls.matmul(args);
  }

  /** The matmul tuner's results so far (`GPT2_SFT_MATMUL=tune`), or undefined for another kernel. */
  get matmulTuning(): TunedShape[] | undefined {
    return this.#matmuls.matmulTuning;
  }

  sumRows(args: OpArgs<"sumRows">): void {
    ops.sumRows(this.#rt, args);
  }

  // ------------------------------------------------------------------ attention

  attentionSavedLength(B: number, T: number, NH: number): number {
    return this.#attention.attentionSavedLength(B, T, NH);
  }

  attentionForward(args: OpArgs<"attentionForward">): void {
    this.#attention.attentionForward(args);
  }

  attentionBackward(args: OpArgs<"attentionBackward">): void {
    this.#attention.attentionBackward(args);
  }

  attentionCached(args: OpArgs<"attentionCached">): void {
    this.#attention.attentionCached(args);
  }

  // ------------------------------------------------------------------ loss

  crossEntropy(args: OpArgs<"crossEntropy">): void {
    ops.crossEntropy(this.#rt, args);
  }

  sum(args: OpArgs<"sum">): void {
    ops.sum(this.#rt, args);
  }

  // ------------------------------------------------------------------ optimizer

  globalNorm(args: OpArgs<"globalNorm">): void {
    ops.globalNorm(this.#rt, args);
  }

  adamw(args: OpArgs<"adamw">): void {
    ops.adamw(this.#rt, args);
  }
}
