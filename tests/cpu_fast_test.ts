/**
 * The CPU backend's fast matmuls (src/backend/cpu/matmul.ts: OpenBLAS through FFI, and the WebAssembly SIMD
 * kernel of cpu/wasm_matmul.ts) against the reference loops, at awkward shapes (1, primes, K = 0, sizes around
 * the kernels' 4/8/16-wide tiles and OpenBLAS's blocking) for every transA × transB × bias × accumulate
 * combination; the BLAS self-check; and the mode selection (option, `GPT2_SFT_CPU`, descriptions).
 *
 * Without a loadable OpenBLAS (or FFI) the BLAS tests are skipped with a notice, except under CI (`CI`
 * set), where .ci/run installs Debian's libopenblas0-pthread and a missing library is a failure.
 *
 * Tolerance, per element: the reference sums in float64 and rounds once (error ≤ ε/2·|x|, ε = 2⁻²³);
 * BLAS and WASM sum K products in float32 in some order, so by the standard bound its error is at most
 * γ_K·Σ_k|A(i,k)·B(k,j)| with γ_K ≈ K·ε/2, plus one rounding each for adding the bias and the old value.
 * We allow (K + 3)·ε·(Σ_k|A·B| + |bias| + |old out|), twice that bound, so any real mistake (a wrong
 * transpose, a dropped bias, `=` for `+=`) — an error of the size of the values themselves — still fails.
 */

import { describe, expect, test } from "bun:test";
import process from "node:process";
import { CpuBackend, cpuData } from "../src/backend/cpu.ts";
import {
  ACCELERATE,
  blasCandidates,
  blasMatmul,
  blasSelfCheck,
  loadBlas,
  parseCpuMatmulMode,
  selectCpuMatmul,
} from "../src/backend/cpu/matmul.ts";
import { backendSettings } from "../src/env.ts";
import type { Buf } from "../src/backend/backend.ts";
import { type Cblas, openCblas } from "../src/runtime.ts";
import { wasmSimdMath } from "../src/backend/cpu/wasm_math.ts";
import { dropoutKeep, dropoutParams } from "../src/backend/dropout_hash.ts";
import { uniformRng as rng } from "../src/model/rng.ts";

const loaded = loadBlas();
const available = "blas" in loaded;
if (!available) {
  if (process.env.CI) {
    throw new Error(`cpu_fast_test: BLAS is not available, and CI is set (.ci/run installs it): ${loaded.reason}`);
  }
  console.log(`cpu_fast_test: no BLAS (${loaded.reason}); skipping the BLAS matmul tests`);
}
const blasTest = (name: string, fn: () => void) => test.skipIf(!available)(name, fn, 60_000);

/** n values uniform in [−1, 1), as float32. */
function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 2 * r() - 1;
  return x;
}

const EPS = 2 ** -23;

interface Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  accumulate: boolean;
}

/** Runs one case on both backends and checks the per-element bound explained at the top of the file. */
function checkCase(ref: CpuBackend, fast: CpuBackend, c: Case, seed: number): void {
  const { M, N, K } = c;
  const a = rand(M * K, seed), b = rand(K * N, seed + 1), bias = rand(N, seed + 2), old = rand(M * N, seed + 3);
  const run = (be: CpuBackend): Float32Array => {
    const out = be.upload(c.accumulate ? old : new Float32Array(M * N));
    const bufs: Buf[] = [be.upload(a), be.upload(b)];
    be.matmul({
      out,
      a: bufs[0]!,
      b: bufs[1]!,
      bias: c.bias ? be.upload(bias) : undefined,
      M,
      N,
      K,
      transA: c.transA,
      transB: c.transB,
      accumulate: c.accumulate,
    });
    return cpuData(out) as Float32Array;
  };
  const expected = run(ref), actual = run(fast);
  const A = (i: number, k: number) => c.transA ? a[k * M + i]! : a[i * K + k]!;
  const B = (k: number, j: number) => c.transB ? b[j * K + k]! : b[k * N + j]!;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let mag = 0;
      for (let k = 0; k < K; k++) mag += Math.abs(A(i, k) * B(k, j));
      if (c.bias) mag += Math.abs(bias[j]!);
      if (c.accumulate) mag += Math.abs(old[i * N + j]!);
      const tol = (K + 3) * EPS * mag;
      const e = expected[i * N + j]!, x = actual[i * N + j]!;
      if (!(Math.abs(x - e) <= tol)) {
        throw new Error(
          `BLAS matmul differs from the reference at [${i},${j}] for ${JSON.stringify(c)}: ` +
            `got ${x}, expected ${e} (|err| ${Math.abs(x - e)} > tolerance ${tol})`,
        );
      }
    }
  }
}

/** Every transA × transB × bias × accumulate combination at (M, N, K). */
function combos(M: number, N: number, K: number): Case[] {
  const cases: Case[] = [];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const bias of [false, true]) {
        for (const accumulate of [false, true]) cases.push({ M, N, K, transA, transB, bias, accumulate });
      }
    }
  }
  return cases;
}

for (const impl of ["blas", "wasm"] as const) {
  describe(`${impl} matmul vs the reference loops`, () => {
    const ref = new CpuBackend({ matmul: "reference" });
    const usable = impl === "wasm" || available;
    const fast = usable ? new CpuBackend({ matmul: impl }) : ref;
    const implTest = (name: string, fn: () => void) => test.skipIf(!usable)(name, fn, 60_000);

    // [M, N, K]: degenerate ones, odd primes, and sizes around the 4/8/16-wide kernel tiles
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [1, 7, 5],
      [3, 1, 9],
      [5, 3, 1],
      [17, 33, 65],
      [31, 16, 8],
      [37, 70, 129],
      [64, 48, 17],
    ];
    for (const [M, N, K] of shapes) {
      implTest(`M=${M} N=${N} K=${K}, all 16 combinations`, () => {
        combos(M, N, K).forEach((c, n) => checkCase(ref, fast, c, 1000 * M + 10 * n + K));
      });
    }

    implTest("K = 0 gives the bias (or the old value plus the bias); M = 0 and N = 0 do nothing", () => {
      for (const c of combos(4, 6, 0)) checkCase(ref, fast, c, 7);
      for (const c of [...combos(0, 5, 3), ...combos(5, 0, 3)]) checkCase(ref, fast, c, 8);
    });

    implTest("a GPT-2-sized slice (M=96, N=300, K=768), logits-style Bᵀ and the weight-gradient Aᵀ", () => {
      const base = { M: 96, N: 300, K: 768, bias: false };
      checkCase(ref, fast, { ...base, transA: false, transB: true, accumulate: false }, 11);
      checkCase(ref, fast, { ...base, transA: true, transB: false, accumulate: true }, 12);
      checkCase(ref, fast, { ...base, transA: false, transB: false, bias: true, accumulate: false }, 13);
    });

    // sumRows goes through the strided GEMM (a row of ones times inp) on both
    implTest("sumRows (a row of ones times inp), = and +=, against the loops' float64 sums", () => {
      for (const [M, N] of [[1, 1], [7, 3], [2100, 64], [33, 769]] as const) {
        const x = rand(M * N, M + N), old = rand(N, N);
        for (const accumulate of [false, true]) {
          const sum = (be: CpuBackend) => {
            const out = be.upload(old);
            be.sumRows({ out, inp: be.upload(x), M, N, accumulate });
            return cpuData(out) as Float32Array;
          };
          const got = sum(fast), exp = sum(ref);
          // float32 sums of M terms in [−1, 1): at most M·ε·M, far below a dropped row or the old value
          for (let j = 0; j < N; j++) {
            if (!(Math.abs(got[j]! - exp[j]!) <= M * M * EPS + 1e-6)) {
              throw new Error(`sumRows M=${M} N=${N} += ${accumulate} [${j}]: got ${got[j]}, expected ${exp[j]}`);
            }
          }
        }
      }
    });

    implTest("the strided GEMM: offsets, leading dimensions past the width, alpha, beta (C unread at beta 0)", () => {
      const gemm = selectCpuMatmul(impl)!.gemm;
      for (const [M, N, K] of [[1, 1, 1], [5, 9, 3], [13, 17, 70]] as const) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            for (const [alpha, beta] of [[1, 0], [1, 1], [0.5, 0], [-2, 0.25]] as const) {
              // sub-matrices of bigger arrays: rows of lda/ldb/ldc elements, starting at an offset
              const lda = (transA ? M : K) + 3, ldb = (transB ? K : N) + 2, ldc = N + 5;
              const aOffset = 7, bOffset = 4, cOffset = 11;
              const a = rand(aOffset + (transA ? K : M) * lda, M + K), b = rand(bOffset + (transB ? N : K) * ldb, N);
              const c0 = rand(cOffset + M * ldc, 3);
              if (beta === 0) c0.fill(NaN, cOffset); // BLAS never reads C at beta 0: NaN must not leak through
              const c = c0.slice();
              gemm({ transA, transB, M, N, K, alpha, a, aOffset, lda, b, bOffset, ldb, beta, c, cOffset, ldc });
              const what = JSON.stringify({ M, N, K, transA, transB, alpha, beta });
              for (let i = 0; i < M; i++) {
                for (let j = 0; j < ldc; j++) {
                  const at = cOffset + i * ldc + j;
                  if (j >= N) { // outside the sub-matrix: untouched
                    if (!Object.is(c[at], c0[at])) throw new Error(`${what}: C[${i},${j}] outside N was written`);
                    continue;
                  }
                  let acc = 0, mag = 0;
                  for (let k = 0; k < K; k++) {
                    const p = (transA ? a[aOffset + k * lda + i]! : a[aOffset + i * lda + k]!) *
                      (transB ? b[bOffset + j * ldb + k]! : b[bOffset + k * ldb + j]!);
                    acc += p;
                    mag += Math.abs(p);
                  }
                  const e = alpha * acc + (beta === 0 ? 0 : beta * c0[at]!);
                  const tol = (K + 3) * EPS * (Math.abs(alpha) * mag + Math.abs(beta * (beta ? c0[at]! : 0)));
                  if (!(Math.abs(c[at]! - e) <= tol)) {
                    throw new Error(`${what}: C[${i},${j}] = ${c[at]}, expected ${e}`);
                  }
                }
              }
              // before the first row and after the last: untouched
              expect(c.subarray(0, cOffset)).toEqual(c0.subarray(0, cOffset));
            }
          }
        }
      }
    });

    implTest("still rejects out aliasing an input", () => {
      const x = fast.upload(new Float32Array(4));
      expect(() => fast.matmul({ out: x, a: x, b: fast.upload(new Float32Array(4)), M: 2, N: 2, K: 2 })).toThrow(
        "out must not alias",
      );
    });
  });
}

describe("choosing the CPU matmul", () => {
  test("the reference option keeps the plain loops and says so; wasm says so too", () => {
    const be = new CpuBackend({ matmul: "reference" });
    expect(be.description).toBe("CPU reference (plain TypeScript loops, 1 thread)");
    expect(new CpuBackend({ matmul: "wasm" }).description).toContain("WebAssembly SIMD for matmul");
  });

  blasTest("auto and blas take OpenBLAS through FFI and name it", () => {
    expect(new CpuBackend({ matmul: "blas" }).description).toContain("via FFI for matmul");
    expect(new CpuBackend().description).toContain("via FFI for matmul");
  });

  test("GPT2_SFT_CPU=reference forces the loops under auto; a bad value is an error", () => {
    // src/env.ts reads the variable into the backend's option
    const fromEnv = (v: string) => backendSettings({ GPT2_SFT_CPU: v }).cpu ?? {};
    expect(fromEnv("reference")).toEqual({ matmul: "reference" });
    expect(selectCpuMatmul(fromEnv("reference").matmul)).toBeUndefined();
    expect(new CpuBackend(fromEnv("reference")).description).toContain("CPU reference");
    expect(new CpuBackend(fromEnv("wasm")).description).toContain("WebAssembly SIMD");
    expect(() => fromEnv("fast")).toThrow('Unknown CPU mode in GPT2_SFT_CPU: "fast"');
    expect(backendSettings({ GPT2_SFT_CPU: "" }).cpu).toEqual({}); // empty: unset
  });

  test("an unknown option is an error that lists the choices", () => {
    expect(() => parseCpuMatmulMode("gpu")).toThrow("expected one of auto, blas, wasm, reference");
  });

  test("a library that is not there gives a reason, not an exception", () => {
    const r = openCblas(["libno_such_blas_here.so.9"]);
    expect("reason" in r).toBeTruthy();
  });

  test("the libraries tried: GPT2_SFT_BLAS_LIB first, OpenBLAS's names, and Accelerate on macOS only", () => {
    expect(blasCandidates("linux")[0]).toBe("libopenblas.so.0");
    expect(blasCandidates("linux")).not.toContain(ACCELERATE);
    expect(blasCandidates("darwin").at(-1)).toBe(ACCELERATE);
    const lib = backendSettings({ GPT2_SFT_BLAS_LIB: "/opt/my/libblis.so" }).cpu?.blasLib;
    expect(lib).toBe("/opt/my/libblis.so");
    expect(blasCandidates("win32", lib)[0]).toBe("/opt/my/libblis.so");
  });

  test("a one-thread BLAS (OPENBLAS_NUM_THREADS=1) is split over the helper threads like the WASM kernel", () => {
    const fake = (threads: number): Cblas => ({ sgemm: () => {}, path: "fake", config: "", threads, close: () => {} });
    const single = blasMatmul(fake(1)), many = blasMatmul(fake(8)), unknown = blasMatmul(fake(0));
    expect([single.multithreaded, many.multithreaded, unknown.multithreaded]).toEqual([false, true, true]);
    expect(single.singleThreaded?.(() => 42)).toBe(42); // nothing to hold back: heads may be split
    expect(many.singleThreaded).toBeUndefined(); // 8 threads but no way to set them: heads stay whole
  });

  test("the self-check rejects a library whose sgemm computes wrong results", () => {
    const broken: Cblas = {
      // fills the output with ones (a stand-in for a miscompiled kernel)
      sgemm: (_o, _ta, _tb, M, N, _K, _al, _a, _lda, _b, _ldb, _be, c) => c.fill(1, 0, M * N),
      path: "broken",
      config: "",
      threads: 1,
      close: () => {},
    };
    expect(blasSelfCheck(broken)).toContain("failed a self-check");
    if (available && "blas" in loaded) expect(blasSelfCheck(loaded.blas)).toBeUndefined();
  });
});

describe("AdamW in WebAssembly SIMD (cpu/wasm_math.ts) against the reference loops", () => {
  const fast = new CpuBackend({ matmul: "wasm" }), ref = new CpuBackend({ matmul: "reference" });
  for (
    const [name, beta1, clipTo] of [["β1 0.9, clipped", 0.9, 0.5], [
      "β1 0.3 (loops: the other lerp)",
      0.3,
      100,
    ]] as const
  ) {
    test(`3 steps, lengths around the 4-lane and 16 K chunk edges: ${name}`, () => {
      for (const n of [1, 5, 16385, 40_003]) {
        const p0 = rand(n, 7 * n), grads = [rand(n, n + 1), rand(n, n + 2), rand(n, n + 3).map((x) => x * 0.01)];
        const run = (be: CpuBackend) => {
          const param = be.upload(p0), m = be.alloc(n), v = be.alloc(n), norm = be.alloc(1);
          grads.forEach((g, s) => {
            const grad = be.upload(g);
            be.globalNorm({ out: norm, bufs: [grad] });
            be.adamw({
              param,
              grad,
              m,
              v,
              n,
              lr: 1e-3,
              beta1,
              beta2: 0.999,
              eps: 1e-8,
              weightDecay: 0.01,
              step: s + 1,
              norm,
              maxNorm: clipTo,
            });
          });
          return [param, m, v].map((b) => cpuData(b) as Float32Array);
        };
        const got = run(fast), exp = run(ref);
        // float32 arithmetic against float64 rounded once: a few ulp, measured against each array's largest
        // value (m and v cancel towards 0 in places, where a relative error means nothing); a wrong bias
        // correction, decay or clip moves parameters by ≥ 1e−5
        for (const [k, what] of ["param", "m", "v"].entries()) {
          const g = got[k]!, e = exp[k]!;
          let worst = 0, scale = 0;
          for (let i = 0; i < n; i++) {
            worst = Math.max(worst, Math.abs(g[i]! - e[i]!));
            scale = Math.max(scale, Math.abs(e[i]!));
          }
          expect([what, n, worst / scale]).toEqual([what, n, worst / scale < 1e-6 ? worst / scale : -1]);
        }
        // and the step moved every parameter by about lr
        expect(Math.abs(got[0]![n - 1]! - p0[n - 1]!)).toBeGreaterThan(1e-4);
      }
    });
  }
});

describe("GELU in WebAssembly SIMD (cpu/wasm_math.ts) against the reference loops", () => {
  const fast = new CpuBackend({ matmul: "wasm" }), ref = new CpuBackend({ matmul: "reference" });
  test("the fast backend says it uses it", () => {
    expect(fast.description).toContain("GELU, softmax, layernorm and AdamW in WebAssembly SIMD");
  });

  test("forward, backward (= and +=, in place): lengths around the 4-lane and 16 K chunk edges, extreme inputs", () => {
    for (const n of [1, 3, 4, 5, 16383, 16384, 16385, 40_003]) {
      const x = rand(n, n).map((v) => v * 12); // |x| < 12: the whole curved part and both tails
      // extremes: 0, tiny, huge (x³ overflows float32), ±∞ and NaN
      const special = [0, 1e-8, -1e-8, 30, -30, 1e30, -1e30, Infinity, -Infinity, NaN];
      for (const [j, v] of special.entries()) if (j * 7 < n) x[j * 7] = v;
      const dout = rand(n, n + 1);
      const old = rand(n, n + 2);
      const run = (be: CpuBackend) => {
        const X = be.upload(x), D = be.upload(dout), O = be.alloc(n), G = be.alloc(n), A = be.upload(old);
        const I = be.upload(x); // in place: out = inp
        be.geluForward({ out: O, inp: X, n });
        be.geluForward({ out: I, inp: I, n });
        be.geluBackward({ dinp: G, inp: X, dout: D, n });
        be.geluBackward({ dinp: A, inp: X, dout: D, n, accumulate: true });
        return [O, I, G, A].map((b) => cpuData(b) as Float32Array);
      };
      const got = run(fast), exp = run(ref);
      for (const [k, name] of ["forward", "forward in place", "backward", "backward +="].entries()) {
        const g = got[k]!, e = exp[k]!;
        for (let i = 0; i < n; i++) {
          if (Number.isNaN(x[i]!)) {
            expect(Number.isNaN(g[i]!)).toBe(true); // NaN in, NaN out
            continue;
          }
          // the loops' backward at ±∞ is 0·∞ = NaN; the SIMD one clamps and gives the limits 1 and 0
          if (Number.isNaN(e[i]!) && k >= 2 && !Number.isFinite(x[i]!)) continue;
          if (Number.isNaN(e[i]!) && Number.isNaN(g[i]!)) continue;
          // gelu(−∞): the loops (and torch) compute 0.5·(−∞)·(1 + tanh) = −∞·0 = NaN, the SIMD form −∞/(1 + E) −∞
          if (k < 2 && x[i] === -Infinity && Number.isNaN(e[i]!) && g[i] === -Infinity) continue;
          // a few float32 roundings: 4e−7 of the value's scale (the input's for the forward, dout's and the
          // old value's for the backward), at least 4e−7
          const scale = k < 2 ? Math.abs(x[i]!) : Math.abs(dout[i]!) * 1.2 + (k === 3 ? Math.abs(old[i]!) : 0);
          const err = Math.abs(g[i]! - e[i]!);
          if (!(err <= 4e-7 * Math.max(1, scale)) && e[i] !== g[i]) {
            throw new Error(`${name} n=${n} i=${i} x=${x[i]}: got ${g[i]}, expected ${e[i]}`);
          }
        }
      }
    }
  });
});

describe("GELU's saved derivative (geluForward's deriv, geluBackward from it)", () => {
  test("fast path: the same numbers bit for bit as recomputing it; the loops: to float32 rounding", () => {
    for (
      const [name, be] of [["wasm", new CpuBackend({ matmul: "wasm" })], [
        "loops",
        new CpuBackend({ matmul: "reference" }),
      ]] as const
    ) {
      for (const n of [1, 5, 16387, 40_003]) {
        const x = rand(n, n).map((v) => v * 12), dout = rand(n, n + 1), old = rand(n, n + 2);
        const X = be.upload(x), D = be.upload(dout);
        const out = be.alloc(n), out2 = be.alloc(n), deriv = be.alloc(n);
        be.geluForward({ out, inp: X, n });
        be.geluForward({ out: out2, inp: X, n, deriv });
        const g1 = be.upload(old), g2 = be.upload(old);
        be.geluBackward({ dinp: g1, inp: X, dout: D, n, accumulate: true });
        be.geluBackward({ dinp: g2, inp: X, dout: D, n, accumulate: true, deriv });
        const [o1, o2, a, b] = [out, out2, g1, g2].map((q) => cpuData(q) as Float32Array);
        for (let i = 0; i < n; i++) {
          if (!Object.is(o1![i], o2![i])) throw new Error(`${name} forward n=${n} [${i}]: ${o2![i]} vs ${o1![i]}`);
          const ok = name === "wasm"
            ? Object.is(a![i], b![i])
            : Math.abs(a![i]! - b![i]!) <= 4e-7 * (Math.abs(dout[i]!) * 1.2 + Math.abs(old[i]!) + 1);
          if (!ok) throw new Error(`${name} backward n=${n} [${i}] x=${x[i]}: ${b![i]} from deriv vs ${a![i]}`);
        }
      }
    }
    expect(new CpuBackend({ matmul: "wasm" }).geluSavesDerivative).toBe(true);
    expect(new CpuBackend({ matmul: "reference" }).geluSavesDerivative).toBe(false);
  });

  test("the other activations on the fast backend: the loops' forward and derivative, the SIMD product", () => {
    const fast = new CpuBackend({ matmul: "wasm" }), ref = new CpuBackend({ matmul: "reference" });
    const n = 70_003; // above the size where the backward is split over the helper threads
    const x = rand(n, 3).map((v) => v * 12), dout = rand(n, 4), old = rand(n, 5);
    for (const activation of ["gelu", "relu", "silu", "quick_gelu"] as const) {
      const run = (be: CpuBackend) => {
        const X = be.upload(x), D = be.upload(dout), out = be.alloc(n), deriv = be.alloc(n);
        const g1 = be.upload(old), g2 = be.upload(old);
        be.geluForward({ out, inp: X, n, deriv, activation });
        be.geluBackward({ dinp: g1, inp: X, dout: D, n, accumulate: true, activation });
        be.geluBackward({ dinp: g2, inp: X, dout: D, n, accumulate: true, deriv, activation });
        return [out, deriv, g1, g2].map((q) => cpuData(q) as Float32Array);
      };
      const [o, d, a, b] = run(fast), [eo, ed, ea] = run(ref);
      expect([Array.from(o!), Array.from(d!), Array.from(a!)]).toEqual([
        Array.from(eo!),
        Array.from(ed!),
        Array.from(ea!),
      ]);
      for (let i = 0; i < n; i++) {
        // deriv·dout in float32, then the float32 sum: ≤ 2 roundings of the terms' scale
        if (Math.abs(b![i]! - ea![i]!) > 4e-7 * (Math.abs(dout[i]!) * 1.2 + Math.abs(old[i]!) + 1)) {
          throw new Error(`${activation} backward from deriv [${i}] x=${x[i]}: ${b![i]} vs ${ea![i]}`);
        }
      }
    }
  });
});

describe("exp in WebAssembly SIMD (cpu/wasm_math.ts, the attention softmax's)", () => {
  test("exp(x − shift) within 4e−7 relative over the float32 range, lengths around the 4-lane edge", () => {
    const m = wasmSimdMath();
    if ("reason" in m) throw new Error(m.reason);
    for (const n of [1, 3, 4, 5, 255, 16384]) {
      const x = rand(n + 7, n).map((v) => v * 90); // [−90, 90): past both clamps
      x[7] = 0;
      const out = new Float32Array(n);
      for (const shift of [0, 3.5, -20]) {
        m.expShift(out, x, 7, n, shift);
        for (let i = 0; i < n; i++) {
          const y = Math.min(88, Math.max(-87, Math.fround(x[7 + i]! - shift)));
          const want = Math.exp(y);
          if (!(Math.abs(out[i]! - want) <= 4e-7 * want)) {
            throw new Error(`n=${n} shift=${shift} x=${x[7 + i]}: got ${out[i]}, expected ${want}`);
          }
        }
      }
    }
    expect(() => m.expShift(new Float32Array(16385), new Float32Array(16385), 0, 16385, 0)).toThrow("exceed");
  });
});

describe("the attention softmax in WebAssembly SIMD (cpu/wasm_math.ts attentionScratch) against float64", () => {
  test("forward (causal, right padding after len) and backward, T around the 4-lane edge; the block grows", () => {
    const m = wasmSimdMath();
    if ("reason" in m) throw new Error(m.reason);
    for (const T of [1, 3, 4, 5, 70, 133]) {
      for (const len of [0, 2, T - 1, T]) {
        const sc = m.attentionScratch(T);
        const scores = rand(T * T, T + len).map((v) => v * 8);
        sc.p.set(scores);
        sc.softmax(len);
        const P = sc.p.slice();
        const dP = rand(T * T, 2 * T + len);
        sc.d.set(dP);
        sc.softmaxBackward();
        for (let t = 0; t < T; t++) {
          const n = Math.max(0, Math.min(t + 1, len)), row = t * T;
          const max = Math.max(...Array.from(scores.subarray(row, row + n)));
          let sum = 0;
          for (let s = 0; s < n; s++) sum += Math.exp(scores[row + s]! - max);
          let pdp = 0;
          for (let s = 0; s <= t; s++) pdp += P[row + s]! * dP[row + s]!;
          for (let s = 0; s < T; s++) {
            const want = s < n ? Math.exp(scores[row + s]! - max) / sum : 0;
            const got = P[row + s]!;
            // float32 exp and sum: a few ulp; past n exactly 0
            if (s >= n ? got !== 0 : !(Math.abs(got - want) <= 1e-6 * want + 1e-12)) {
              throw new Error(`softmax T=${T} len=${len} [${t},${s}]: got ${got}, expected ${want}`);
            }
            const dWant = s <= t ? P[row + s]! * (dP[row + s]! - pdp) : 0;
            const dGot = sc.d[row + s]!;
            if (s > t ? dGot !== 0 : !(Math.abs(dGot - dWant) <= 1e-6)) {
              throw new Error(`softmax backward T=${T} len=${len} [${t},${s}]: got ${dGot}, expected ${dWant}`);
            }
          }
        }
      }
    }
  });
});

describe("layernorm in WebAssembly SIMD (cpu/wasm_math.ts) against the reference loops", () => {
  const fast = new CpuBackend({ matmul: "wasm" }), ref = new CpuBackend({ matmul: "reference" });
  // C = 7 and 4100 take the loops on both (C must be a multiple of 4, at most 4096); N·C past a 16 K chunk
  for (const [N, C] of [[1, 4], [5, 8], [300, 64], [23, 768], [3, 7], [2, 4100]] as const) {
    test(`N=${N} C=${C}: out, mean, rstd; dinp (= and +=), dweight and dbias accumulated`, () => {
      const x = rand(N * C, N + C).map((v, i) => v * 3 + (i % 5)); // non-zero means, varied scales
      const w = rand(C, C).map((v) => 1 + 0.5 * v), b = rand(C, C + 1), dout = rand(N * C, C + 2);
      const old = rand(N * C, C + 3), dw0 = rand(C, C + 4), db0 = rand(C, C + 5);
      const run = (be: CpuBackend) => {
        const out = be.alloc(N * C), mean = be.alloc(N), rstd = be.alloc(N), out2 = be.alloc(N * C);
        const inp = be.upload(x), weight = be.upload(w), bias = be.upload(b), eps = 1e-5;
        be.layernormForward({ out, mean, rstd, inp, weight, bias, N, C, eps });
        be.layernormForward({ out: out2, inp, weight, bias, N, C, eps }); // no mean/rstd saved
        const dinp = be.alloc(N * C), acc = be.upload(old), dweight = be.upload(dw0), dbias = be.upload(db0);
        const common = { dout: be.upload(dout), inp, weight, mean, rstd, N, C };
        be.layernormBackward({ dinp, dweight, dbias, ...common });
        be.layernormBackward({ dinp: acc, dweight, dbias, ...common, accumulate: true });
        return [out, out2, mean, rstd, dinp, acc, dweight, dbias].map((q) => cpuData(q) as Float32Array);
      };
      const got = run(fast), exp = run(ref);
      const names = ["out", "out (no mean/rstd)", "mean", "rstd", "dinp", "dinp +=", "dweight", "dbias"];
      for (const [k, name] of names.entries()) {
        const g = got[k]!, e = exp[k]!;
        // float32 sums of C (or 2N for dweight, dbias) terms against float64: ≈ 1e−6 of the values' scale
        let scale = 1;
        for (const v of e) scale = Math.max(scale, Math.abs(v));
        for (let i = 0; i < e.length; i++) {
          if (!(Math.abs(g[i]! - e[i]!) <= 4e-6 * scale)) {
            throw new Error(`${name} N=${N} C=${C} [${i}]: got ${g[i]}, expected ${e[i]} (scale ${scale})`);
          }
        }
      }
    });
  }
});

describe("the attention dropout masks in WebAssembly SIMD (attentionScratch dropP/dropD) against dropout_hash.ts", () => {
  test("pd = keep ? p·scale : 0 and d·M in place, bit for bit, at flat offsets past 2²⁴, T odd", () => {
    const m = wasmSimdMath();
    if ("reason" in m) throw new Error(m.reason);
    for (const [T, p, seed, base] of [[1, 0.1, 7, 0], [5, 0.5, 1234, 3 * 25], [67, 0.1, 99, 40_000_000]] as const) {
      const d = dropoutParams(p, seed), sc = m.attentionScratch(T);
      const P = rand(T * T, T), D = rand(T * T, T + 1);
      sc.p.set(P);
      sc.d.set(D);
      sc.dropP(d, base);
      sc.dropD(d, base);
      let kept = 0;
      for (let k = 0; k < T * T; k++) {
        const keep = dropoutKeep(d, base + k);
        if (keep) kept++;
        const wantP = keep ? Math.fround(P[k]! * d.scale) : 0, wantD = keep ? Math.fround(D[k]! * d.scale) : 0;
        if (sc.pd[k] !== wantP || sc.d[k] !== wantD) {
          throw new Error(`T=${T} p=${p} k=${k}: pd ${sc.pd[k]} vs ${wantP}, d ${sc.d[k]} vs ${wantD}`);
        }
      }
      if (T > 50) expect(Math.abs(kept / (T * T) - (1 - p))).toBeLessThan(0.03);
    }
  });
});

describe("dropout in WebAssembly SIMD (cpu/wasm_math.ts) against the reference loops", () => {
  test("forward, backward (=, +=, in place), bit for bit, lengths around the 4-lane and 16 K chunk edges", () => {
    const fast = new CpuBackend({ matmul: "wasm" }), ref = new CpuBackend({ matmul: "reference" });
    for (const n of [1, 5, 16384, 16387, 40_003]) {
      const x = rand(n, n), old = rand(n, n + 1);
      const run = (be: CpuBackend) => {
        const out = be.upload(old), acc = be.upload(old), inPlace = be.upload(x), dinp = be.upload(old);
        be.dropoutForward({ out, inp: be.upload(x), n, p: 0.1, seed: n });
        be.dropoutForward({ out: inPlace, inp: inPlace, n, p: 0.3, seed: 5 });
        be.dropoutBackward({ dinp, dout: be.upload(x), n, p: 0.1, seed: n });
        be.dropoutBackward({ dinp: acc, dout: be.upload(x), n, p: 0.1, seed: n, accumulate: true });
        return [out, inPlace, dinp, acc].map((b) => cpuData(b) as Float32Array);
      };
      const got = run(fast), exp = run(ref);
      for (const [k, name] of ["forward", "forward in place", "backward", "backward +="].entries()) {
        for (let i = 0; i < n; i++) {
          if (!Object.is(got[k]![i], exp[k]![i])) {
            throw new Error(`${name} n=${n} [${i}]: got ${got[k]![i]}, expected ${exp[k]![i]}`);
          }
        }
      }
    }
  });
});
