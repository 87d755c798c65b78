/**
 * `node:worker_threads` in the browser bundle: no helper threads (the CPU backend runs on the page's own
 * thread: `cpuThreadCount` is 1 outside Deno and Bun, so nothing here is called).
 * @module
 */

function unavailable(): never {
  throw new Error("node:worker_threads is not available in the browser");
}

/** Refuses to start. */
export class Worker {
  constructor() {
    unavailable();
  }
}

/** Refuses to start. */
export class MessageChannel {
  constructor() {
    unavailable();
  }
}

/** No port to receive from. */
export function receiveMessageOnPort(): undefined {
  return undefined;
}

export const workerData: unknown = undefined;
export const isMainThread = true;
export const parentPort = null;
