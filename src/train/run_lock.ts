/**
 * One training run per run directory: `<run-dir>/.lock` holds the PID, host and start time of the run
 * using it. A second run on the same directory is refused naming that PID; a lock whose process is gone
 * (a run killed with SIGKILL, a crash) is taken over with a notice.
 * @module
 */

import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** The lock file's name inside the run directory. */
export const LOCK_FILE = ".lock";

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

/** A held lock; `release()` removes the file (idempotent, synchronous so that it works in an exit path). */
export interface RunLock {
  readonly path: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM"; // exists, owned by someone else
  }
}

/**
 * Take the lock of `runDir` (created if needed). Throws when another live process holds it;
 * `notice` hears about a stale lock that was taken over.
 */
export function acquireRunLock(runDir: string, notice: (msg: string) => void = () => {}): RunLock {
  mkdirSync(runDir, { recursive: true });
  const path = join(runDir, LOCK_FILE);
  const mine: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, "wx");
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") {
        throw new Error(`Cannot lock run directory ${runDir}: ${e instanceof Error ? e.message : e}`);
      }
      let held: Partial<LockInfo> = {};
      try {
        held = JSON.parse(readFileSync(path, "utf8"));
      } catch {
        // a lock being written this instant, or torn by a crash: treated as stale below when its pid is unknown
      }
      const pid = typeof held.pid === "number" ? held.pid : undefined;
      if (pid !== undefined && pid !== process.pid && (held.host !== mine.host || alive(pid))) {
        const where = held.host === mine.host ? "" : ` on host ${held.host}`;
        throw new Error(
          `Cannot use run directory ${runDir}: another training run (PID ${pid}${where}, started ${
            held.started ?? "?"
          }) is using it; wait for it to end, or choose another --run-dir` +
            (held.host === mine.host ? "" : ` (remove ${path} if that run is gone)`),
        );
      }
      if (pid === process.pid) {
        throw new Error(`Cannot use run directory ${runDir}: this process already trains in it`);
      }
      notice(`Removed a stale lock of PID ${pid ?? "?"} (no longer running) from ${runDir}`);
      rmSync(path, { force: true });
      continue;
    }
    try {
      writeSync(fd, JSON.stringify(mine) + "\n");
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      path,
      release() {
        if (released) return;
        released = true;
        try {
          const held = JSON.parse(readFileSync(path, "utf8")) as LockInfo;
          if (held.pid === mine.pid && held.started === mine.started) rmSync(path, { force: true });
        } catch {
          // already gone
        }
      },
    };
  }
  throw new Error(`Cannot lock run directory ${runDir}: ${path} keeps reappearing`);
}
