/**
 * Small helpers shared by the command-line front doors: typed flag values with errors that name the flag,
 * and one way to report a fatal error.
 * @module
 */

import process from "node:process";

/** A flag value as a number; `integer` and `min` are checked, with the flag named in the error. */
export function numberFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  opts: { integer?: boolean; min?: number; max?: number } = {},
): number {
  if (value === undefined) return fallback;
  const v = Number(value);
  if (value.trim() === "" || !Number.isFinite(v)) throw new Error(`Invalid --${name}: "${value}" is not a number`);
  if (opts.integer && !Number.isInteger(v)) throw new Error(`Invalid --${name}: ${value} is not a whole number`);
  if (opts.min !== undefined && v < opts.min) throw new Error(`Invalid --${name}: ${value} (expected ≥ ${opts.min})`);
  if (opts.max !== undefined && v > opts.max) throw new Error(`Invalid --${name}: ${value} (expected ≤ ${opts.max})`);
  return v;
}

/** A flag value that must be one of `choices`. */
export function choiceFlag<T extends string>(
  name: string,
  value: string | undefined,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) {
    throw new Error(`Invalid --${name}: "${value}" (expected one of ${choices.join(", ")})`);
  }
  return value as T;
}

/** Run `main`, print an error as one line (the message, no stack unless DEBUG is set) and exit 1. */
export function runMain(name: string, main: () => Promise<number | void>): void {
  main().then((code) => process.exit(code ?? 0), (e) => {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`${name}: ${msg}`);
    if (process.env.DEBUG && e instanceof Error) console.error(e.stack);
    process.exit(1);
  });
}

/** "deno 2.9.6" / "bun 1.4.5" / "node 20.x". */
export function runtimeName(): string {
  const v = process.versions as Record<string, string | undefined>;
  if (v.bun) return `bun ${v.bun}`;
  if (v.deno) return `deno ${v.deno}`;
  return `node ${v.node}`;
}
