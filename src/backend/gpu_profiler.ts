/**
 * GPU time per kernel, from WebGPU timestamp queries: where a training step's time goes on the device.
 *
 * With profiling on, the WebGPU backend gives every dispatch its own compute pass whose `timestampWrites`
 * record the GPU clock when the pass begins and ends. When a batch of dispatches is submitted, the
 * timestamps are resolved into a buffer and copied to a mappable one in the same command buffer; once
 * the GPU is done they are read back without blocking the next batch, and each pass's duration is added
 * to its kernel's total. Copies and clears (outside passes) are not timed.
 *
 * The numbers are the GPU's own, but profiling changes what it measures a little: one pass per dispatch
 * adds a barrier between dispatches that a shared pass might have overlapped, and the implementation may
 * round timestamps (Chrome and Dawn quantise them to tens of µs unless told not to; `gpu_device.ts` tells
 * Dawn not to). Compare kernels within one profile; time whole steps without it.
 *
 * The matmul tuner (`matmul_tuner.ts`) uses a second instance to time its candidates' runs.
 * @module
 */

import type { KernelTime } from "./profile.ts";

const QUERY_RESOLVE = 0x0200;
const COPY_SRC = 0x0004;
const COPY_DST = 0x0008;
const MAP_READ = 0x0001;

/** Collects per-dispatch GPU times for one device; created by the backend when profiling is on. */
export class GpuProfiler {
  readonly #device: GPUDevice;
  readonly #querySet: GPUQuerySet;
  readonly #resolve: GPUBuffer;
  readonly #capacity: number;
  /** Kernel keys of the passes recorded in the current batch, in order. */
  #keys: string[] = [];
  #totals = new Map<string, { calls: number; ns: number }>();
  #pending: Promise<void>[] = [];

  /** `capacity`: the most dispatches one submitted batch can hold. */
  constructor(device: GPUDevice, capacity: number) {
    if (!device.features.has("timestamp-query")) {
      throw new Error(
        'Cannot profile GPU kernels: the adapter does not offer the "timestamp-query" feature ' +
          "(unset GPT2_SFT_PROFILE or the profile option)",
      );
    }
    this.#device = device;
    this.#capacity = capacity;
    this.#querySet = device.createQuerySet({ label: "profiler timestamps", type: "timestamp", count: 2 * capacity });
    this.#resolve = device.createBuffer({
      label: "profiler resolve",
      size: 16 * capacity,
      usage: QUERY_RESOLVE | COPY_SRC,
    });
  }

  /** The descriptor of the pass for the next dispatch, timing it under `key`. */
  pass(key: string): GPUComputePassDescriptor {
    const i = this.#keys.length;
    if (i >= this.#capacity) throw new Error(`GPU profiler: more than ${this.#capacity} dispatches in one batch`);
    this.#keys.push(key);
    return {
      label: key,
      timestampWrites: { querySet: this.#querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    };
  }

  /**
   * Record, at the end of a batch's encoder, the copy of its timestamps to the host; returns the function
   * to call once the batch is submitted (it starts the read-back), or null when the batch had no pass.
   */
  finishBatch(encoder: GPUCommandEncoder): (() => void) | null {
    const keys = this.#keys;
    if (keys.length === 0) return null;
    this.#keys = [];
    const bytes = 16 * keys.length;
    const staging = this.#device.createBuffer({ label: "profiler read", size: bytes, usage: MAP_READ | COPY_DST });
    encoder.resolveQuerySet(this.#querySet, 0, 2 * keys.length, this.#resolve, 0);
    encoder.copyBufferToBuffer(this.#resolve, 0, staging, 0, bytes);
    return () => {
      this.#pending.push(
        staging.mapAsync(MAP_READ).then(() => {
          const t = new BigUint64Array(staging.getMappedRange(0, bytes).slice(0));
          staging.unmap();
          staging.destroy();
          for (let i = 0; i < keys.length; i++) {
            const d = t[2 * i + 1]! - t[2 * i]!;
            const e = this.#totals.get(keys[i]!) ?? { calls: 0, ns: 0 };
            e.calls++;
            e.ns += d > 0n ? Number(d) : 0;
            this.#totals.set(keys[i]!, e);
          }
        }),
      );
    };
  }

  /** The totals since the last reset, largest first (call after the work is submitted). */
  async report(): Promise<KernelTime[]> {
    const pending = this.#pending;
    this.#pending = [];
    await Promise.all(pending);
    return [...this.#totals].map(([kernel, e]) => ({ kernel, calls: e.calls, ms: e.ns / 1e6 }))
      .sort((a, b) => b.ms - a.ms);
  }

  /** The totals of one key that have come back so far (no waiting). */
  totals(key: string): { calls: number; ns: number } | undefined {
    return this.#totals.get(key);
  }

  /** Forget the totals (the work still in flight is counted when it lands: call `report` first). */
  reset(): void {
    this.#totals.clear();
  }

  destroy(): void {
    this.#querySet.destroy();
    this.#resolve.destroy();
  }
}
