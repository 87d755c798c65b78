/**
 * Globals the library expects that a browser page may lack; imported first by the page.
 * - `SharedArrayBuffer` exists only on cross-origin-isolated pages (served with COOP/COEP headers). The CPU
 *   backend asks `a.buffer instanceof SharedArrayBuffer` (it shares arrays with helper threads only, and a
 *   page has none), so elsewhere a class that no buffer is an instance of stands in.
 * @module
 */

const g = globalThis as { SharedArrayBuffer?: unknown };
if (typeof g.SharedArrayBuffer === "undefined") {
  g.SharedArrayBuffer = class SharedArrayBufferUnavailable {
    constructor() {
      throw new Error("SharedArrayBuffer needs a cross-origin-isolated page");
    }
  };
}

export {};
