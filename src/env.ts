/**
 * The environment variables the program honours, read in one place. The front doors (src/cli/*, the root
 * scripts, src/parity.ts, phases/, bench/) call {@link readSettings} (or one of its parts) and pass the
 * values down as options: the backends, the hub client and the console colours never read the environment
 * themselves. docs/ENVIRONMENT.md describes every variable.
 *
 * The variables are read one at a time by name ({@link readVariables}; under Deno a variable without
 * `--allow-env` reads as unset, without a prompt). Parsing is separate and pure, so tests pass a plain object.
 *
 * @example
 * ```ts
 * import { readSettings } from "./env.ts";
 * import { createBackend } from "./backend/mod.ts";
 * const settings = readSettings(); // throws, naming the variable, on a malformed value
 * const be = await createBackend("auto", settings.backend);
 * ```
 * @module
 */

import type { BackendOptions } from "./backend/mod.ts";
import { parseCpuMatmulMode } from "./backend/cpu/matmul.ts";
import { parseAttentionKernel, parseMatmulKernel } from "./backend/webgpu/options.ts";
import { readEnv } from "./runtime.ts";

/** The backend variables. */
export const BACKEND_VARIABLES = [
  "GPT2_SFT_CPU",
  "GPT2_SFT_CPU_THREADS",
  "GPT2_SFT_BLAS_LIB",
  "GPT2_SFT_MATMUL",
  "GPT2_SFT_ATTENTION",
  "GPT2_SFT_PROFILE",
] as const;

/** The hub variables, as Python's `huggingface_hub` reads them (parsed by `hubSettingsFromEnv` in io/hf_cache.ts). */
export const HUB_VARIABLES = [
  "HF_HUB_CACHE",
  "HUGGINGFACE_HUB_CACHE",
  "HF_HOME",
  "XDG_CACHE_HOME",
  "HF_ENDPOINT",
  "HF_TOKEN",
  "HUGGING_FACE_HUB_TOKEN",
  "HF_HUB_OFFLINE",
  "HF_HUB_ETAG_TIMEOUT",
  "HF_HUB_DOWNLOAD_TIMEOUT",
] as const;

/** The output and test variables. */
export const OUTPUT_VARIABLES = ["NO_COLOR", "DEBUG", "CI"] as const;

/** Every variable the program reads. */
export const ENV_VARIABLES = [...BACKEND_VARIABLES, ...HUB_VARIABLES, ...OUTPUT_VARIABLES] as const;

/** A variable's name. */
export type EnvVariable = (typeof ENV_VARIABLES)[number];

/** The variables' values as read (unset ones absent or undefined). */
export type EnvValues = Readonly<Partial<Record<string, string | undefined>>>;

/** How the console behaves (never an error: read even while reporting one). */
export interface OutputSettings {
  /** `NO_COLOR` set and non-empty: no ANSI colours (the NO_COLOR convention). */
  noColor: boolean;
  /** `DEBUG` set and non-empty: a failing command prints the error's stack too. */
  debug: boolean;
  /** `CI` set and non-empty: the WebGPU tests fail instead of skipping when no adapter is found. */
  ci: boolean;
}

/** Everything the environment sets. */
export interface Settings extends OutputSettings {
  /** The backends' options (`createBackend(name, settings.backend)`). */
  backend: BackendOptions;
  /** The hub variables as read, for `resolveModel`'s `env` option (it applies them as Python does). */
  hub: Readonly<Record<string, string | undefined>>;
}

/** Read every variable of {@link ENV_VARIABLES} by name (`read` defaults to the process's environment). */
export function readVariables(read: (name: string) => string | undefined = readEnv): EnvValues {
  const out: Record<string, string | undefined> = {};
  for (const name of ENV_VARIABLES) {
    const v = read(name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** A value that is set and not empty. */
function given(env: EnvValues, name: EnvVariable): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * The backends' options from `GPT2_SFT_*`; a malformed value throws, naming the variable and what it
 * expected. Unset (or empty) variables leave the backends' defaults.
 */
export function backendSettings(env: EnvValues = readVariables()): BackendOptions {
  const cpu: NonNullable<BackendOptions["cpu"]> = {};
  const webgpu: NonNullable<BackendOptions["webgpu"]> = {};
  const mode = given(env, "GPT2_SFT_CPU");
  if (mode !== undefined) cpu.matmul = parseCpuMatmulMode(mode, "mode in GPT2_SFT_CPU");
  const threads = given(env, "GPT2_SFT_CPU_THREADS");
  if (threads !== undefined) {
    const n = Number(threads);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`GPT2_SFT_CPU_THREADS must be a whole number ≥ 1, got "${threads}"`);
    }
    cpu.threads = Math.min(n, 64);
  }
  const lib = given(env, "GPT2_SFT_BLAS_LIB");
  if (lib !== undefined) cpu.blasLib = lib;
  const matmul = given(env, "GPT2_SFT_MATMUL");
  if (matmul !== undefined) webgpu.matmul = parseMatmulKernel(matmul, "kernel in GPT2_SFT_MATMUL");
  const attention = given(env, "GPT2_SFT_ATTENTION");
  if (attention !== undefined) webgpu.attention = parseAttentionKernel(attention, "kernel in GPT2_SFT_ATTENTION");
  return { profile: env["GPT2_SFT_PROFILE"] === "1", cpu, webgpu };
}

/** The hub variables alone, for `resolveModel({ env })`. */
export function hubEnvironment(env: EnvValues = readVariables()): Readonly<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const name of HUB_VARIABLES) if (env[name] !== undefined) out[name] = env[name];
  return out;
}

/** `NO_COLOR`, `DEBUG`, `CI`. */
export function outputSettings(env: EnvValues = readVariables()): OutputSettings {
  return {
    noColor: given(env, "NO_COLOR") !== undefined,
    debug: given(env, "DEBUG") !== undefined,
    ci: given(env, "CI") !== undefined,
  };
}

/** Every setting; throws, naming the variable, when a backend variable is malformed. */
export function readSettings(env: EnvValues = readVariables()): Settings {
  return { backend: backendSettings(env), hub: hubEnvironment(env), ...outputSettings(env) };
}
