/**
 * The CPU backend's matmul at GPT-2 (124M-class, C = 768) training shapes with N = B·T = 1024 rows: the
 * reference loops, the WebAssembly SIMD fallback (src/backend/cpu/wasm_matmul.ts) on one thread and split over
 * the default helper threads (`wasm×N`, when there are several cores), the fast path (OpenBLAS
 * through FFI, src/backend/cpu/matmul.ts), and numpy's sgemm on the same shapes and layouts (a python3
 * subprocess; the column is skipped without python3 + numpy). `fast/numpy` is BLAS over numpy.
 *
 * The reference is timed on the first `--ref-rows` rows only (its cost is linear in M; the full shapes
 * would take ~1 min), WASM once on the full shapes, BLAS and numpy on the full shapes, best of `--reps`.
 * numpy runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment (this workplace sets
 * them on some processors for old OpenBLAS builds; they slow a current one) and reports the kernel it ran.
 *
 * Usage: deno run -A bench/cpu_matmul.ts [--reps 3] [--ref-rows 32] [--no-numpy] [--json]
 *        bun bench/cpu_matmul.ts …
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";
import { CpuBackend } from "../src/backend/cpu.ts";
import { cpuThreadCount } from "../src/backend/cpu/threads.ts";
import type { Buf } from "../src/backend/backend.ts";
import { numberFlag, parseFlags, runMain, runtimeName } from "../src/cli/args.ts";
import { backendSettings } from "../src/env.ts";

/** One benchmarked matmul: out[M,N] = op(A)[M,K]·op(B)[K,N] (+ bias). */
interface Shape {
  name: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
}

/** GPT-2 small's matmuls with 1024 rows (B·T), in the layouts src/model and src/autograd issue them. */
const SHAPES: Shape[] = [
  { name: "attn qkv   x·W+b", M: 1024, N: 2304, K: 768, bias: true },
  { name: "attn proj  x·W+b", M: 1024, N: 768, K: 768, bias: true },
  { name: "mlp fc     x·W+b", M: 1024, N: 3072, K: 768, bias: true },
  { name: "mlp proj   x·W+b", M: 1024, N: 768, K: 3072, bias: true },
  { name: "lm head    x·Wteᵀ", M: 1024, N: 21128, K: 768, transB: true },
  { name: "fc dx      dy·Wᵀ", M: 1024, N: 768, K: 3072, transB: true },
  { name: "fc dW      xᵀ·dy", M: 768, N: 3072, K: 1024, transA: true },
];

/** Random float32 values in [−1, 1). */
function rand(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 2 * Math.random() - 1;
  return x;
}

/** Best-of-`reps` seconds of one matmul of `s` with M rows on `be` (after one untimed warm-up run). */
function timeMatmul(be: CpuBackend, s: Shape, M: number, reps: number): number {
  const a = be.upload(rand(M * s.K)), b = be.upload(rand(s.K * s.N)), out = be.alloc(M * s.N);
  const bias: Buf | undefined = s.bias ? be.upload(rand(s.N)) : undefined;
  const run = () => be.matmul({ out, a, b, bias, M, N: s.N, K: s.K, transA: s.transA, transB: s.transB });
  run();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    run();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  for (const x of [a, b, out, bias]) if (x) be.free(x);
  return best;
}

/** numpy's matmul (into a preallocated out, + bias) on the same shapes and layouts; prints one JSON line. */
const NUMPY_SCRIPT = `
import ctypes, glob, json, os, sys, time
import numpy as np
shapes, reps = json.loads(sys.argv[1]), int(sys.argv[2])
core = "?"
for lib in glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*")):
    for fn in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_", "openblas_get_corename"):
        try:
            f = getattr(ctypes.CDLL(lib), fn); f.restype = ctypes.c_char_p; core = f().decode(); break
        except (AttributeError, OSError):
            pass
rng = np.random.default_rng(0)
res = []
for s in shapes:
    M, N, K = s["M"], s["N"], s["K"]
    a = rng.standard_normal((K, M) if s.get("transA") else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if s.get("transB") else (K, N), dtype=np.float32)
    A = a.T if s.get("transA") else a
    B = b.T if s.get("transB") else b
    bias = rng.standard_normal(N, dtype=np.float32)
    out = np.empty((M, N), np.float32)
    def run():
        np.matmul(A, B, out=out)
        if s.get("bias"): np.add(out, bias, out=out)
    run()
    best = 1e9
    for _ in range(reps):
        t = time.perf_counter(); run(); best = min(best, time.perf_counter() - t)
    res.append(best)
print(json.dumps({"numpy": np.__version__, "core": core, "seconds": res}))
`;

/** numpy's seconds per shape, or the reason there are none. */
function numpyTimes(reps: number): { version: string; core: string; seconds: number[] } | { reason: string } {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync("python3", ["-c", NUMPY_SCRIPT, JSON.stringify(SHAPES), String(reps)], {
    env,
    encoding: "utf8",
    timeout: 300_000,
  });
  if (r.error) return { reason: `python3 did not run: ${r.error.message}` };
  if (r.status !== 0) return { reason: `python3 + numpy failed: ${(r.stderr || "").trim().split("\n").pop()}` };
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!) as { numpy: string; core: string; seconds: number[] };
  return { version: j.numpy, core: j.core, seconds: j.seconds };
}

function main(): Promise<number> {
  const { values: v } = parseFlags({
    options: {
      reps: { type: "string" },
      "ref-rows": { type: "string" },
      "no-numpy": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.log(
      "Usage: deno run -A bench/cpu_matmul.ts [--reps 3] [--ref-rows 32] [--no-numpy] [--json]\n" +
        "The CPU matmul (reference, WebAssembly SIMD, OpenBLAS) and numpy's sgemm at GPT-2's training shapes.",
    );
    return Promise.resolve(0);
  }
  const reps = numberFlag("reps", v.reps, 3, { integer: true, min: 1 });
  const refRows = numberFlag("ref-rows", v["ref-rows"], 32, { integer: true, min: 1 });
  const cpu = backendSettings().cpu ?? {}; // GPT2_SFT_CPU_THREADS, GPT2_SFT_BLAS_LIB
  const ref = new CpuBackend({ ...cpu, matmul: "reference" });
  // the WASM kernel on one thread, and split over the default helper threads (what runs without a BLAS)
  const wasm = new CpuBackend({ ...cpu, matmul: "wasm", threads: 1 });
  const wasmThreads = new CpuBackend({ ...cpu, matmul: "wasm" });
  const wasmThreadCount = cpu.threads ?? cpuThreadCount(false); // the default of a matmul that does not thread itself
  let fast: CpuBackend | undefined, fastWhy = "";
  try {
    fast = new CpuBackend({ ...cpu, matmul: "blas" });
  } catch (e) {
    fastWhy = e instanceof Error ? e.message : String(e);
  }
  const np = v["no-numpy"] ? { reason: "--no-numpy" } : numpyTimes(reps);

  const rows = SHAPES.map((s, i) => {
    const flop = (M: number) => 2 * M * s.N * s.K;
    const refGflops = flop(Math.min(refRows, s.M)) / timeMatmul(ref, s, Math.min(refRows, s.M), 1) / 1e9;
    const wasmGflops = flop(s.M) / timeMatmul(wasm, s, s.M, 1) / 1e9;
    const wasmThreadsGflops = wasmThreadCount > 1 ? flop(s.M) / timeMatmul(wasmThreads, s, s.M, 1) / 1e9 : undefined;
    const fastGflops = fast ? flop(s.M) / timeMatmul(fast, s, s.M, reps) / 1e9 : undefined;
    const numpyGflops = "seconds" in np ? flop(s.M) / np.seconds[i]! / 1e9 : undefined;
    return {
      ...s,
      refGflops,
      wasmGflops,
      wasmThreadsGflops,
      wasmThreadsToNumpy: wasmThreadsGflops !== undefined && numpyGflops !== undefined
        ? wasmThreadsGflops / numpyGflops
        : undefined,
      fastGflops,
      numpyGflops,
      ratioToNumpy: fastGflops !== undefined && numpyGflops !== undefined ? fastGflops / numpyGflops : undefined,
    };
  });
  const geo = (xs: (number | undefined)[]) =>
    xs.every((x) => x !== undefined) ? Math.exp(xs.reduce((s, x) => s + Math.log(x!), 0) / xs.length) : undefined;
  const summary = {
    runtime: runtimeName(),
    cores: navigator.hardwareConcurrency,
    fast: fast?.description ?? `unavailable: ${fastWhy}`,
    wasmThreads: wasmThreadCount,
    numpy: "seconds" in np ? `numpy ${np.version} (OpenBLAS kernel ${np.core})` : `unavailable: ${np.reason}`,
    refRows,
    reps,
    geomeanRatioToNumpy: geo(rows.map((r) => r.ratioToNumpy)),
    geomeanWasmThreadsToNumpy: geo(rows.map((r) => r.wasmThreadsToNumpy)),
    rows,
  };
  if (v.json) {
    console.log(JSON.stringify(summary));
    return Promise.resolve(0);
  }
  const f = (x: number | undefined, d = 1) => x === undefined ? "—" : x.toFixed(d);
  console.log(`runtime ${summary.runtime}, ${summary.cores} cores`);
  console.log(`blas:  ${summary.fast}\nnumpy: ${summary.numpy}`);
  console.log(
    `reference timed on ${refRows} rows, wasm once (wasm×${wasmThreadCount}: over ${wasmThreadCount} threads); ` +
      `blas and numpy best of ${reps}; fast = blas\n`,
  );
  console.log(
    `${"matmul".padEnd(20)}${"M×N×K".padEnd(18)}${"ref GF/s".padStart(9)}${"wasm GF/s".padStart(11)}` +
      `${`wasm×${wasmThreadCount}`.padStart(10)}` +
      `${"blas GF/s".padStart(11)}` +
      `${"numpy GF/s".padStart(12)}${"fast/numpy".padStart(12)}`,
  );
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(20)}${`${r.M}×${r.N}×${r.K}`.padEnd(18)}${f(r.refGflops).padStart(9)}` +
        `${f(r.wasmGflops).padStart(11)}${f(r.wasmThreadsGflops).padStart(10)}` +
        `${f(r.fastGflops).padStart(11)}${f(r.numpyGflops).padStart(12)}` +
        `${(r.ratioToNumpy === undefined ? "—" : `${(100 * r.ratioToNumpy).toFixed(0)} %`).padStart(12)}`,
    );
  }
  const g = summary.geomeanRatioToNumpy;
  if (g !== undefined) console.log(`\nfast/numpy, geometric mean over the shapes: ${(100 * g).toFixed(0)} %`);
  const gw = summary.geomeanWasmThreadsToNumpy;
  if (gw !== undefined) {
    console.log(`wasm×${wasmThreadCount}/numpy (no BLAS), geometric mean over the shapes: ${(100 * gw).toFixed(0)} %`);
  }
  return Promise.resolve(0);
}

runMain("cpu_matmul", main);
