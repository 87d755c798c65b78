/**
 * A CPU helper thread (see threads.ts): loads its own SIMD module and matmul (BLAS, or the WASM
 * kernel where the main thread has no BLAS), says it is ready, then waits for jobs — each a message on its
 * port, announced by a bump of the control block's counter — runs the part (parallel.ts) on the shared
 * arrays, and bumps its done counter. An error is sent back as a message and flagged in the control block.
 * @module
 */

import { type MessagePort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { selectCpuMatmul } from "./matmul.ts";
import { type PartJob, runPart } from "./parallel.ts";
import type { ArrayRef } from "./threads.ts";
import { wasmSimdMath } from "./wasm_math.ts";

const POSTED = 0, DONE = 1, STATE = 2;
const ctl = new Int32Array(workerData.ctl as SharedArrayBuffer);
const port = workerData.port as MessagePort;

function fail(e: unknown): void {
  port.postMessage({ error: e instanceof Error ? e.message : String(e) });
  Atomics.store(ctl, STATE, -1);
}

const buffers = new Map<number, SharedArrayBuffer>();

/** The next job message (it was posted before the counter moved, so it is there or about to be). */
function nextJob(): PartJob & { forget?: number[] } {
  for (;;) {
    const m = receiveMessageOnPort(port);
    if (m) return m.message as PartJob & { forget?: number[] };
    Atomics.wait(ctl, 3, 0, 0.05); // a 50 µs nap
  }
}

function decode(job: PartJob & { forget?: number[] }): PartJob {
  for (const id of job.forget ?? []) buffers.delete(id);
  const arrays: PartJob["arrays"] = {};
  for (const [name, r] of Object.entries(job.arrays as unknown as Record<string, ArrayRef>)) {
    if (r.sab) buffers.set(r.id, r.sab);
    const sab = buffers.get(r.id);
    if (!sab) throw new Error(`worker: unknown buffer ${r.id}`);
    arrays[name] = r.i32 ? new Int32Array(sab, r.byteOffset, r.length) : new Float32Array(sab, r.byteOffset, r.length);
  }
  return { op: job.op, nums: job.nums, arrays };
}

function main(): void {
  let ctx;
  try {
    const math = wasmSimdMath();
    if ("reason" in math) throw new Error(math.reason);
    // the same matmul as the main thread's (BLAS, or the WASM kernel where no BLAS loads)
    ctx = { math, gemm: selectCpuMatmul(workerData.matmul ?? "blas", workerData.blasLib)?.gemm };
  } catch (e) {
    fail(e);
    Atomics.notify(ctl, STATE);
    return;
  }
  Atomics.store(ctl, STATE, 1);
  Atomics.notify(ctl, STATE);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, POSTED, seen);
    const posted = Atomics.load(ctl, POSTED);
    while (seen < posted) {
      try {
        runPart(decode(nextJob()), ctx);
      } catch (e) {
        fail(e);
      }
      seen++;
      Atomics.store(ctl, DONE, seen);
      Atomics.notify(ctl, DONE);
    }
  }
}

main();
