/**
 * Helper threads for the CPU backend's fast path: the ops that are not one big matrix product (attention,
 * GELU, dropout, layernorm, AdamW) run single-threaded in WebAssembly SIMD, while OpenBLAS spreads the
 * products over every core. Here each such op is cut into parts (heads, rows, or ranges of elements) that
 * the main thread and `threads − 1` workers (`node:worker_threads`, in Deno and Bun alike) run at once, each
 * with its own SIMD module and its own BLAS handle (`parallel.ts` holds the one function both sides run).
 * Where the matmul does not thread itself (the WebAssembly kernel when no BLAS loads), the products are cut
 * too, into blocks of rows or columns, one per thread.
 *
 * The workers read and write the backend's own arrays: with helper threads the CPU backend allocates its
 * arrays on SharedArrayBuffers, so a part needs no copy. A job travels as a small message per worker (op name, numbers,
 * and each array as buffer id + offset + length; a buffer's SharedArrayBuffer goes along the first time that
 * worker sees it), the start as a counter bumped with `Atomics.notify`, the end as the worker's own counter
 * that the main thread waits on (`Atomics.wait`): a round trip costs 6 µs (Deno) to 25 µs (Bun), so only
 * ops of ≥ ~0.1 ms are split. Workers are `unref`'d: they never keep a finished program alive.
 *
 * Threads: `GPT2_SFT_CPU_THREADS` (1 = none), else `navigator.hardwareConcurrency` (at most 16) on machines with
 * at least 4 cores under Deno or Bun (at least 2 when the matmul does not thread itself), else 1.
 * @module
 */

import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import { runtimeKind } from "../../runtime.ts";
import { loadedBlasLib } from "./matmul.ts";
import type { PartJob } from "./parallel.ts";

/** An array as a job carries it: which shared buffer, where, how long, which type. */
export interface ArrayRef {
  id: number;
  /** Sent the first time a worker sees this buffer. */
  sab?: SharedArrayBuffer;
  byteOffset: number;
  length: number;
  i32: boolean;
}

/** Control block words per worker: [0] jobs posted, [1] jobs done, [2] ready (1) or failed (−1). */
const POSTED = 0, DONE = 1, STATE = 2;

interface Helper {
  worker: Worker;
  ctl: Int32Array;
  port: MessagePort;
  /** Buffer ids this worker has been sent. */
  seen: Set<number>;
  /** Ids whose buffers the main thread has let go: the worker drops them with its next job. */
  forget: number[];
  posted: number;
}

/**
 * The default number of threads (main included), from the core count (`GPT2_SFT_CPU_THREADS`, read by
 * src/env.ts, arrives as the backend's `threads` option instead).
 * `matmulThreads`: whether the matmul already spreads each product over every core (OpenBLAS); then helper
 * threads start at 4 cores, else (the WASM kernel, or a one-thread BLAS) at 2, where the second core would
 * otherwise idle through every product.
 */
export function cpuThreadCount(matmulThreads = true): number {
  // with 2 cores, OpenBLAS's own (spinning) threads and the main thread already fill them: on a 2-core AMD
  // EPYC VM, helper threads made the tiny demo model's step 10 % slower (the real shape's 7–13 % faster)
  // the worker is a .ts module: Deno and Bun run it, elsewhere (Node) a failed start would cost the 20 s wait
  const kind = runtimeKind();
  if (kind !== "deno" && kind !== "bun") return 1;
  const cores = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)?.hardwareConcurrency ?? 1;
  return cores >= (matmulThreads ? 4 : 2) ? Math.min(cores, 16) : 1;
}

/** The helper threads of one CPU backend. */
export class CpuThreads {
  readonly #helpers: Helper[];
  readonly #ids = new WeakMap<SharedArrayBuffer, number>();
  #nextId = 1;
  /** A buffer the backend dropped (its pool is full) must not live on in the workers' caches. */
  readonly #gone = new FinalizationRegistry<number>((id) => {
    for (const h of this.#helpers) if (h.seen.delete(id)) h.forget.push(id);
  });
  #closed = false;

  private constructor(helpers: Helper[]) {
    this.#helpers = helpers;
  }

  /**
   * Start `threads − 1` workers and wait until each has loaded its SIMD module and its matmul (`matmul`:
   * the main thread's kind); the reason when a worker cannot start, so the caller runs single-threaded.
   */
  static start(threads: number, matmul: "blas" | "wasm" = "blas"): CpuThreads | { reason: string } {
    const helpers: Helper[] = [];
    try {
      for (let k = 1; k < threads; k++) {
        const ctl = new Int32Array(new SharedArrayBuffer(16));
        const { port1, port2 } = new MessageChannel();
        const worker = new Worker(new URL("./worker.ts", import.meta.url), {
          workerData: { ctl: ctl.buffer, port: port2, matmul, blasLib: loadedBlasLib() },
          transferList: [port2] as never,
        });
        worker.unref();
        port1.unref?.();
        helpers.push({ worker, ctl, port: port1, seen: new Set(), forget: [], posted: 0 });
      }
      // each worker says it is ready (or why not) within a few seconds (module load, BLAS)
      for (const h of helpers) {
        const deadline = performance.now() + 20_000;
        while (Atomics.load(h.ctl, STATE) === 0 && performance.now() < deadline) Atomics.wait(h.ctl, STATE, 0, 50);
        const state = Atomics.load(h.ctl, STATE);
        if (state !== 1) {
          const msg = receiveMessageOnPort(h.port)?.message as { error?: string } | undefined;
          throw new Error(state === 0 ? "a worker did not start within 20 s" : msg?.error ?? "a worker failed");
        }
      }
    } catch (e) {
      for (const h of helpers) void h.worker.terminate();
      return { reason: e instanceof Error ? e.message : String(e) };
    }
    return new CpuThreads(helpers);
  }

  /** Threads, the main one included. */
  get threads(): number {
    return this.#helpers.length + 1;
  }

  /** Whether every array is on a SharedArrayBuffer (only those can be handed to a worker). */
  static shareable(...arrays: (Float32Array | Int32Array | undefined)[]): boolean {
    return arrays.every((a) => a === undefined || a.buffer instanceof SharedArrayBuffer);
  }

  /**
   * Run `parts[0]` with `local` on this thread and `parts[k]` on worker k − 1 (at most `threads` parts), and
   * return when all are done. A worker's error is thrown here.
   */
  run(parts: readonly PartJob[], local: (job: PartJob) => void): void {
    if (this.#closed) throw new Error("CPU helper threads were closed");
    const used = this.#helpers.slice(0, Math.max(0, parts.length - 1));
    for (const [k, h] of used.entries()) {
      h.port.postMessage(this.#encode(parts[k + 1]!, h));
      h.posted++;
      Atomics.store(h.ctl, POSTED, h.posted);
      Atomics.notify(h.ctl, POSTED);
    }
    let error: unknown;
    try {
      if (parts[0]) local(parts[0]);
    } catch (e) {
      error = e;
    }
    for (const h of used) {
      // a part takes milliseconds to a second: a worker silent for a minute has died (it cannot throw here)
      let waited = 0;
      for (;;) {
        const done = Atomics.load(h.ctl, DONE);
        if (done === h.posted) break;
        if (Atomics.wait(h.ctl, DONE, done, 1000) === "timed-out" && ++waited >= 60) {
          this.close();
          throw new Error("CPU helper thread stopped answering for 60 s (set GPT2_SFT_CPU_THREADS=1 to run without)");
        }
      }
      if (Atomics.load(h.ctl, STATE) < 0) {
        const msg = receiveMessageOnPort(h.port)?.message as { error?: string } | undefined;
        error ??= new Error(`CPU helper thread: ${msg?.error ?? "failed"}`);
        Atomics.store(h.ctl, STATE, 1);
      }
    }
    if (error) throw error;
  }

  /** A job with its arrays as references (a buffer's SharedArrayBuffer the first time this worker sees it). */
  #encode(job: PartJob, h: Helper): unknown {
    const arrays: Record<string, ArrayRef | undefined> = {};
    for (const [name, a] of Object.entries(job.arrays)) {
      if (!a) continue;
      const sab = a.buffer as SharedArrayBuffer;
      let id = this.#ids.get(sab);
      if (id === undefined) {
        id = this.#nextId++;
        this.#ids.set(sab, id);
        this.#gone.register(sab, id);
      }
      const first = !h.seen.has(id);
      if (first) h.seen.add(id);
      arrays[name] = {
        id,
        sab: first ? sab : undefined,
        byteOffset: a.byteOffset,
        length: a.length,
        i32: a instanceof Int32Array,
      };
    }
    const forget = h.forget.splice(0);
    return { ...job, arrays, forget };
  }

  /** Stop the workers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.#helpers) {
      void h.worker.terminate();
      h.port.close();
    }
  }
}

/** Split [0, n) into at most `parts` ranges whose starts are multiples of `align` (the last ends at n). */
export function splitRange(n: number, parts: number, align = 1): [number, number][] {
  const out: [number, number][] = [];
  const step = Math.ceil(n / parts / align) * align;
  for (let lo = 0; lo < n; lo += step) out.push([lo, Math.min(n, lo + step)]);
  return out;
}
