/**
 * The one place that touches `Deno.*` and `Bun.*` (via `bun:ffi`): which runtime this is (and its
 * version), reading an environment variable without a permission prompt, and opening a CBLAS library
 * through the runtime's FFI.
 * Everything else in src/ uses `node:` built-ins and web APIs.
 *
 * @example
 * ```ts
 * import { openCblas } from "./runtime.ts";
 * const r = openCblas(["libopenblas.so.0"]);
 * if ("blas" in r) console.log(r.blas.config); // "OpenBLAS 0.3.21 … Cooperlake …"
 * else console.log(r.reason);
 * ```
 * @module
 */

import process from "node:process";

/** The JavaScript runtime this process runs in. */
export type RuntimeKind = "deno" | "bun" | "node" | "unknown";

/** The structural bits of the Deno namespace used here (so the file also reads under Bun's types). */
interface DenoLike {
  permissions: { querySync?(desc: { name: string; variable?: string }): { state: string } };
  dlopen(path: string, symbols: Record<string, unknown>): { symbols: Record<string, unknown>; close(): void };
  UnsafePointerView: { getCString(ptr: unknown): string };
}

/** The bits of `bun:ffi` used here. */
interface BunFfiLike {
  dlopen(path: string, symbols: Record<string, unknown>): { symbols: Record<string, unknown>; close(): void };
}

function denoNs(): DenoLike | undefined {
  return (globalThis as unknown as { Deno?: DenoLike }).Deno;
}

/** Which runtime this is: Deno, Bun, Node or something else. */
export function runtimeKind(): RuntimeKind {
  if (denoNs() !== undefined) return "deno";
  if ((globalThis as unknown as { Bun?: unknown }).Bun !== undefined) return "bun";
  if (typeof process !== "undefined" && process.versions?.node !== undefined) return "node";
  return "unknown";
}

/** The runtime and its version: "deno 2.9.6" / "bun 1.4.5" / "node 20.x". */
export function runtimeName(): string {
  const v = process.versions as Record<string, string | undefined>;
  if (v.bun) return `bun ${v.bun}`;
  if (v.deno) return `deno ${v.deno}`;
  return `node ${v.node}`;
}

/**
 * The value of environment variable `name`, or undefined when it is unset or cannot be read (Deno
 * without `--allow-env` for it: checked first, so there is never a permission prompt).
 */
export function readEnv(name: string): string | undefined {
  const deno = denoNs();
  if (deno?.permissions.querySync && deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

/**
 * `cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)` as JavaScript sees it:
 * the arrays are passed as pointers to their first element (a subarray passes its offset).
 */
export type SgemmFn = (
  order: number,
  transA: number,
  transB: number,
  M: number,
  N: number,
  K: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/** An opened CBLAS library. */
export interface Cblas {
  /** `cblas_sgemm`. */
  readonly sgemm: SgemmFn;
  /** The name or path it was opened by. */
  readonly path: string;
  /** OpenBLAS's build string (version, kernel), or "" for another CBLAS. */
  readonly config: string;
  /** OpenBLAS's thread count, or 0 when the library does not say. */
  readonly threads: number;
  /** OpenBLAS's `openblas_set_num_threads` (process-wide), when the library has it. */
  readonly setThreads?: (n: number) => void;
  /** OpenBLAS's `openblas_get_num_threads` now (`threads` is the count at load). */
  readonly currentThreads?: () => number;
  /** Unload the library. */
  close(): void;
}

/** CBLAS enum values (row-major storage, transposition flags). */
export const CBLAS = { rowMajor: 101, noTrans: 111, trans: 112 } as const;

const SGEMM_ARGS = [
  "i32",
  "i32",
  "i32",
  "i32",
  "i32",
  "i32",
  "f32",
  "buffer",
  "i32",
  "buffer",
  "i32",
  "f32",
  "buffer",
  "i32",
];

/** Open one library under Deno: sgemm is required, OpenBLAS's introspection symbols are optional. */
function openDeno(deno: DenoLike, path: string): Cblas {
  const lib = deno.dlopen(path, {
    cblas_sgemm: { parameters: SGEMM_ARGS, result: "void" },
    openblas_get_config: { parameters: [], result: "pointer", optional: true },
    openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
    openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  });
  const s = lib.symbols as {
    cblas_sgemm: SgemmFn;
    openblas_get_config: (() => unknown) | null;
    openblas_get_num_threads: (() => number) | null;
    openblas_set_num_threads: ((n: number) => void) | null;
  };
  const cfgPtr = s.openblas_get_config?.();
  return {
    sgemm: s.cblas_sgemm,
    path,
    config: cfgPtr ? deno.UnsafePointerView.getCString(cfgPtr) : "",
    threads: s.openblas_get_num_threads?.() ?? 0,
    setThreads: s.openblas_set_num_threads ?? undefined,
    currentThreads: s.openblas_get_num_threads ?? undefined,
    close: () => lib.close(),
  };
}

/** Open one library under Bun. Bun's dlopen fails on a missing symbol, so the optional ones are a second try. */
function openBun(ffi: BunFfiLike, path: string): Cblas {
  const sgemm = { args: SGEMM_ARGS.map((t) => t === "buffer" ? "ptr" : t), returns: "void" };
  let lib: { symbols: Record<string, unknown>; close(): void };
  let config = "", threads = 0, setThreads: ((n: number) => void) | undefined;
  let currentThreads: (() => number) | undefined;
  try {
    lib = ffi.dlopen(path, {
      cblas_sgemm: sgemm,
      openblas_get_config: { args: [], returns: "cstring" },
      openblas_get_num_threads: { args: [], returns: "i32" },
      openblas_set_num_threads: { args: ["i32"], returns: "void" },
    });
    config = String((lib.symbols.openblas_get_config as () => unknown)());
    threads = (lib.symbols.openblas_get_num_threads as () => number)();
    setThreads = lib.symbols.openblas_set_num_threads as (n: number) => void;
    currentThreads = lib.symbols.openblas_get_num_threads as () => number;
  } catch {
    lib = ffi.dlopen(path, { cblas_sgemm: sgemm });
  }
  const sgemmFn = lib.symbols.cblas_sgemm as SgemmFn;
  return { sgemm: sgemmFn, path, config, threads, setThreads, currentThreads, close: () => lib.close() };
}

/**
 * Open the first of `candidates` (library names for the dynamic loader, or paths) that loads and exports
 * `cblas_sgemm`, through Deno's or Bun's FFI. Returns `{ reason }` instead when FFI is not there (Node,
 * Deno without `--allow-ffi`: checked first, so there is no permission prompt) or no candidate loads.
 */
export function openCblas(candidates: readonly string[]): { blas: Cblas } | { reason: string } {
  const deno = denoNs();
  let open: (path: string) => Cblas;
  if (deno) {
    const state = deno.permissions.querySync?.({ name: "ffi" }).state;
    if (state !== "granted") return { reason: "Deno runs without --allow-ffi" };
    open = (path) => openDeno(deno, path);
  } else if (runtimeKind() === "bun") {
    const req = (import.meta as unknown as { require?: (id: string) => unknown }).require;
    if (!req) return { reason: "bun:ffi cannot be loaded (no import.meta.require)" };
    const ffi = req("bun:ffi") as BunFfiLike;
    open = (path) => openBun(ffi, path);
  } else {
    return { reason: `no FFI in this runtime (${runtimeKind()})` };
  }
  const errors: string[] = [];
  for (const path of candidates) {
    try {
      return { blas: open(path) };
    } catch (e) {
      errors.push(`${path}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    }
  }
  return { reason: `no CBLAS library found (${errors.join("; ")})` };
}
