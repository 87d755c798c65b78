/**
 * Small helpers shared by the command-line front doors: typed flag values with errors that name the flag,
 * and one way to report a fatal error.
 * @module
 */

import process from "node:process";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { outputSettings } from "../env.ts";

export { runtimeName } from "../runtime.ts";

/**
 * The `--help` lines of the environment variables every model-running command reads (train, eval); src/env.ts
 * reads them.
 */
export const ENV_HELP = `Environment (backend tuning; the description printed at start says what is in use)
  GPT2_SFT_CPU          CPU matmul: auto | blas | wasm | reference        GPT2_SFT_BLAS_LIB  a CBLAS to load
  GPT2_SFT_CPU_THREADS  CPU threads for attention, GELU, dropout, layernorm, AdamW, and the products without BLAS
                        (default: the cores if ≥ 4, or ≥ 2 without BLAS, else 1)
  GPT2_SFT_MATMUL       WebGPU matmul: tiled (default) | large | tune (timed per shape on this GPU) |
                        large-f16 (half precision: for evaluation)
  GPT2_SFT_ATTENTION    WebGPU training attention: matmul (default) | rows | flash (no T×T buffers: long sequences fit)
  GPT2_SFT_PROFILE=1    time every kernel (WebGPU: on the GPU) or op (CPU); the table is printed at the end
  HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE   as Python's huggingface_hub
  HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT   seconds a hub request, a stalled download may wait (default 10 each)
`;

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** The range of `--seed`: what Python's `random.Random` reproduction (PyRandom) and the dropout seeds take. */
export const SEED_RANGE = { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER } as const;
/** The range of a sampling `--seed` (eval, chat): the 32-bit seed of the sampler's generator (mulberry32). */
export const SAMPLING_SEED_RANGE = { integer: true, min: 0, max: 2 ** 32 - 1 } as const;

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
  // Number() also reads 0x10, 0b1 and 0o7: a flag takes decimal numbers only (1e-3 and .5 included)
  if (!DECIMAL.test(value.trim())) throw new Error(`Invalid --${name}: "${value}" is not a decimal number`);
  if (opts.integer && !Number.isInteger(v)) throw new Error(`Invalid --${name}: ${value} is not a whole number`);
  if (opts.min !== undefined && v < opts.min) throw new Error(`Invalid --${name}: ${value} (expected ≥ ${opts.min})`);
  if (opts.max !== undefined && v > opts.max) {
    const power = opts.max === Number.MAX_SAFE_INTEGER ? ", 2^53 − 1" : opts.max === 2 ** 32 - 1 ? ", 2^32 − 1" : "";
    throw new Error(`Invalid --${name}: ${value} (expected ≤ ${opts.max}${power})`);
  }
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

/**
 * A comma-separated list (`--labels 退款,换货,其他`; the full-width comma "，" separates too), trimmed;
 * undefined when the flag is absent. Empty items and repeats are errors naming the flag.
 */
export function listFlag(name: string, value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(/[,，]/).map((s) => s.trim());
  if (items.some((s) => s === "")) {
    throw new Error(`Invalid --${name}: "${value}" has an empty item (expected names separated by commas)`);
  }
  const repeated = items.find((s, i) => items.indexOf(s) !== i);
  if (repeated !== undefined) throw new Error(`Invalid --${name}: "${repeated}" appears twice`);
  return items;
}

/** Run `main`, print an error as one line (the message, no stack unless DEBUG is set) and exit 1. */
export function runMain(name: string, main: () => Promise<number | void>): void {
  main().then((code) => process.exit(code ?? 0), (e) => {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`${name}: ${msg}`);
    if (outputSettings().debug && e instanceof Error) console.error(e.stack);
    process.exit(1);
  });
}

/** Levenshtein distance, for "did you mean". */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * `parseArgs` of node:util (strict), whose errors say what to do: an unknown flag gets the nearest known one
 * ("did you mean --lr?") and every error a pointer to `--help`.
 */
export function parseFlags<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS")) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const flag = /'(-{1,2}[^'=]+)/.exec(msg)?.[1] ?? "";
      const name = flag.replace(/^-+/, "");
      const known = Object.keys(config.options ?? {});
      const best = known
        .map((k) => ({ k, d: editDistance(name, k) }))
        .sort((x, y) => x.d - y.d)[0];
      const hint = best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean --${best.k}?)` : "";
      throw new Error(`Unknown flag ${flag}${hint}; --help lists the flags`);
    }
    throw new Error(`${msg.split(". ")[0]}; --help lists the flags`);
  }
}
