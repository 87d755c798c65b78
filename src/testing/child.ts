/**
 * Starting one of the project's scripts in a child process of the runtime that runs this one (Deno or
 * Bun), for the tests and benchmarks that drive the real command line (signals, exit codes).
 * @module
 */

import process from "node:process";

/** The arguments of `process.execPath` that run `script` with `args`: `run -A script …` on Deno. */
export function scriptArgv(script: string, args: readonly string[]): string[] {
  const isBun = !!(process.versions as Record<string, string | undefined>).bun;
  return isBun ? [script, ...args] : ["run", "-A", script, ...args];
}
