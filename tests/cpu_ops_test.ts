/**
 * The CPU reference backend against float64 references written here, independently and naively:
 * - forwards against a float64 forward on the same (float32-representable) inputs;
 * - backwards against central finite differences of `L(x) = Σ forward64(x)·w` for a random projection w
 *   (w is what the backend receives as `dout`);
 * - attentionCached against attentionForward fed token by token; AdamW against torch's formula by hand.
 * Sizes are deliberately awkward: C not a multiple of 4, T = 1, odd N, fully masked attention rows.
 *
 * Tolerances, shared reasoning: central differences in float64 with h = 1e-5 are accurate to about
 * 1e-9 relative (truncation h² ≈ 1e-10, rounding 1e-16/h ≈ 1e-11). The backend stores float32 results
 * and saved intermediates (ε = 6e-8), so its gradients carry ~1e-7 relative error. A tolerance of
 * 1e-5 × max|gradient| (plus 1e-4 relative) leaves a wide margin for that and still catches any formula
 * mistake, which shows up as an O(1) relative error.
 */

import { describe, expect, test } from "bun:test";
import { CpuBackend, CpuBuf, cpuData } from "../src/backend/cpu.ts";
import type { Buf } from "../src/backend/backend.ts";
import { assertClose, maxAbs } from "../src/testing/compare.ts";
import { uniformRng as rng } from "../src/model/rng.ts";
import { attention64, dot, numGrad } from "./helpers/reference64.ts";
import { erfc } from "../src/backend/cpu/activation.ts";

// ---------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------

/** n normal samples · scale, rounded to float32 (so float32 and float64 code see the same numbers). */
function randn(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - r(), v = r();
    x[i] = Math.fround(scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return x;
}

const be = new CpuBackend({ matmul: "reference" }); // the plain loops are the spec under test
const up = (x: ArrayLike<number>): Buf => be.upload(Float32Array.from(x));
const upI = (x: ArrayLike<number>): Buf => be.upload(Int32Array.from(x));
const get = (b: Buf): Float32Array => cpuData(b) as Float32Array;

/** The analytic gradient against finite differences; tolerance as explained at the top of the file. */
function checkGrad(actual: ArrayLike<number>, f: (x: Float64Array) => number, x: Float64Array, what: string): void {
  const expected = numGrad(f, x);
  assertClose(actual, expected, { atol: 1e-5 * Math.max(maxAbs(expected), 1e-3), rtol: 1e-4 }, what);
}

/** A float64 result rounded once to float32 differs from the float32 op by ~1 ulp: 1e-6 relative. */
function checkForward(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assertClose(actual, expected, { atol: 1e-6 * Math.max(maxAbs(expected), 1), rtol: 1e-5 }, what);
}

// ---------------------------------------------------------------------------------------------------
// float64 references (deliberately naive)
// ---------------------------------------------------------------------------------------------------

function matmul64(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  o: { M: number; N: number; K: number; transA?: boolean; transB?: boolean; bias?: ArrayLike<number> },
): Float64Array {
  const { M, N, K } = o;
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = o.bias ? o.bias[j]! : 0;
      for (let k = 0; k < K; k++) {
        const aik = o.transA ? a[k * M + i]! : a[i * K + k]!;
        const bkj = o.transB ? b[j * K + k]! : b[k * N + j]!;
        s += aik * bkj;
      }
      out[i * N + j] = s;
    }
  }
  return out;
}

function gelu64(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(
    x,
    (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  );
}

function layernorm64(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  N: number,
  C: number,
  eps: number,
): Float64Array {
  const out = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[n * C + c]! / C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[n * C + c]! - mean) ** 2 / C;
    for (let c = 0; c < C; c++) out[n * C + c] = ((x[n * C + c]! - mean) / Math.sqrt(v + eps)) * w[c]! + b[c]!;
  }
  return out;
}

/** Per-row −log softmax(logits)[target], 0 for target −100. */
function crossEntropy64(logits: ArrayLike<number>, targets: ArrayLike<number>, N: number, V: number): Float64Array {
  const losses = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    if (targets[n] === -100) continue;
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[n * V + v]!);
    losses[n] = Math.log(z) - logits[n * V + targets[n]!]!;
  }
  return losses;
}

// ---------------------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------------------

describe("cpu memory", () => {
  test("alloc, upload, write, read, copy, zero", async () => {
    const z = be.alloc(5);
    expect(z.dtype).toBe("f32");
    expect(z.length).toBe(5);
    expect(be.alloc(3, "i32").dtype).toBe("i32");
    const src = new Float32Array([1, 2, 3, 4, 5]);
    const b = be.upload(src);
    src[0] = 99; // upload copied
    expect(Array.from(await be.read(b))).toEqual([1, 2, 3, 4, 5]);
    const r = await be.read(b);
    r[1] = 99; // read copied
    expect(get(b)[1]).toBe(2);
    be.write(b, new Float32Array([7, 8]), 3);
    expect(Array.from(get(b))).toEqual([1, 2, 3, 7, 8]);
    be.copy(z, b, 2, 1, 3);
    expect(Array.from(get(z))).toEqual([0, 7, 8, 0, 0]);
    be.copy(z, b);
    expect(Array.from(get(z))).toEqual([1, 2, 3, 7, 8]);
    be.zero(z);
    expect(Array.from(get(z))).toEqual([0, 0, 0, 0, 0]);
    expect(be.upload(new Int32Array([1, -2])).dtype).toBe("i32");
  });

  test("errors: out of range, dtype mismatch, use after free", () => {
    const b = be.alloc(3);
    expect(() => be.write(b, new Float32Array(2), 2)).toThrow("exceed");
    expect(() => be.write(b, new Int32Array(1))).toThrow("dtype");
    expect(() => be.copy(b, be.alloc(3, "i32"))).toThrow("dtypes differ");
    expect(() => be.copy(b, be.alloc(5))).toThrow("out of range");
    const f = be.alloc(2, "f32", "scratch");
    be.free(f);
    expect(() => be.zero(f)).toThrow('"scratch" was freed');
    expect(f instanceof CpuBuf).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------
// elementwise
// ---------------------------------------------------------------------------------------------------

describe("cpu elementwise", () => {
  test("add: assign, accumulate, in place (out = a)", () => {
    const n = 7;
    const a = randn(n, 1), b = randn(n, 2), o = randn(n, 3);
    const out = up(o);
    be.add({ out, a: up(a), b: up(b), n });
    checkForward(get(out), a.map((v, i) => v + b[i]!), "add =");
    const out2 = up(o);
    be.add({ out: out2, a: up(a), b: up(b), n, accumulate: true });
    checkForward(get(out2), o.map((v, i) => v + a[i]! + b[i]!), "add +=");
    const inplace = up(a);
    be.add({ out: inplace, a: inplace, b: up(b), n });
    checkForward(get(inplace), a.map((v, i) => v + b[i]!), "add in place");
    // only the first n elements are touched
    const partial = up([1, 1, 1]);
    be.add({ out: partial, a: up([1, 1, 1]), b: up([1, 1, 1]), n: 2 });
    expect(Array.from(get(partial))).toEqual([2, 2, 1]);
  });

  test("scale", () => {
    const x = up([1, -2, 3]);
    be.scale({ buf: x, n: 2, s: 0.5 });
    expect(Array.from(get(x))).toEqual([0.5, -1, 3]);
  });

  test("gelu forward and backward (FD), = and +=", () => {
    const n = 13;
    const x = randn(n, 4, 2);
    x[0] = 6;
    x[1] = -6;
    x[2] = 0; // tails and the origin
    const out = be.alloc(n);
    be.geluForward({ out, inp: up(x), n });
    checkForward(get(out), gelu64(x), "gelu forward");
    const w = randn(n, 5);
    const dinp = up(randn(n, 6)); // garbage: must be overwritten
    be.geluBackward({ dinp, inp: up(x), dout: up(w), n });
    checkGrad(get(dinp), (xx) => dot(gelu64(xx), w), x, "gelu dinp");
    const prev = randn(n, 7);
    const acc = up(prev);
    be.geluBackward({ dinp: acc, inp: up(x), dout: up(w), n, accumulate: true });
    checkForward(get(acc), prev.map((p, i) => p + get(dinp)[i]!), "gelu dinp +=");
  });

  // Exact GELU's values at float32 x, from Python: 0.5·x·math.erfc(−x/√2) in float64.
  const GELU_X = [
    -8,
    -5,
    -3.5,
    -2,
    -1.25,
    -0.5,
    -0.0010000000474974513,
    0,
    0.0010000000474974513,
    0.75,
    1.5,
    2.5,
    4,
    7,
  ];
  const GELU_PY = [
    -4.9767684594174555e-15,
    -1.4332578593959731e-06,
    -0.0008142017766243376,
    -0.04550026389635844,
    -0.1320622170835691,
    -0.15426876936299344,
    -0.0004996010814969171,
    0,
    0.0005003989660005341,
    0.5800294857173488,
    1.399789198096713,
    2.4844758366855597,
    3.9998733150326675,
    6.999999999991041,
  ];

  test("erfc (float64, for the exact GELU) against Python's math.erfc to 2e-15 relative", () => {
    const z = [-3, -1.5, -0.25, 0, 0.25, 1, 1.75, 2, 3, 5, 9, 0.46875, -0.46875, 4, -4, 4.5, 25];
    const want = [
      1.9999779095030015,
      1.9661051464753108,
      1.276326390168237,
      1,
      0.7236736098317631,
      0.15729920705028513,
      0.013328328780817555,
      0.004677734981047265,
      2.2090496998585438e-05,
      1.5374597944280351e-12,
      4.13703174651381e-37,
      0.507386526782062,
      1.492613473217938,
      1.541725790028002e-08,
      1.999999984582742,
      1.9661604415428873e-10,
      8.300172571196522e-274,
    ];
    // Cody's rational approximations are good to float64's rounding; the interval edges 0.46875 and 4 included
    assertClose(z.map(erfc), want, { atol: 0, rtol: 2e-15 }, "erfc");
    expect([erfc(Infinity), erfc(-Infinity), erfc(40), Number.isNaN(erfc(NaN))]).toEqual([0, 2, 0, true]);
  });

  /** float64 forms of the other activations, written out here (σ by Math.exp). */
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const ACTS64: Record<"gelu" | "relu" | "silu" | "quick_gelu", (v: number) => number> = {
    gelu: (v) => 0.5 * v * erfc(-v / Math.SQRT2),
    relu: (v) => Math.max(v, 0),
    silu: (v) => v * sig(v),
    quick_gelu: (v) => v * sig(1.702 * v),
  };

  test("exact GELU forward against Python's values, tails included", () => {
    const n = GELU_X.length, out = be.alloc(n);
    be.geluForward({ out, inp: up(GELU_X), n, activation: "gelu" });
    // float32 storage: 1 ulp relative (6e-8); the left tail keeps its relative accuracy (erfc, not 1 − erf)
    assertClose(get(out), GELU_PY, { atol: 0, rtol: 1.2e-7 }, "gelu (erf) forward");
    // and it is not the tanh form (which differs by up to ~5e-4 near |x| = 2)
    be.geluForward({ out, inp: up(GELU_X), n });
    expect(maxAbs(get(out).map((v, i) => v - GELU_PY[i]!))).toBeGreaterThan(1e-4);
  });

  for (const act of ["gelu", "relu", "silu", "quick_gelu"] as const) {
    test(`${act} forward and backward (FD), = and +=, with and without the saved derivative`, () => {
      const n = 15;
      const x = randn(n, 14, 3);
      x[0] = 12, x[1] = -12, x[2] = 0.5, x[3] = -0.5; // tails
      const f64 = (xx: ArrayLike<number>) => Float64Array.from(xx, ACTS64[act]);
      const out = be.alloc(n), deriv = be.alloc(n);
      be.geluForward({ out, inp: up(x), n, activation: act });
      checkForward(get(out), f64(x), `${act} forward`);
      const w = randn(n, 15);
      const dinp = up(randn(n, 16)); // garbage: must be overwritten
      be.geluBackward({ dinp, inp: up(x), dout: up(w), n, activation: act });
      checkGrad(get(dinp), (xx) => dot(f64(xx), w), x, `${act} dinp`);
      const prev = randn(n, 17);
      const acc = up(prev);
      be.geluBackward({ dinp: acc, inp: up(x), dout: up(w), n, accumulate: true, activation: act });
      checkForward(get(acc), prev.map((p, i) => p + get(dinp)[i]!), `${act} dinp +=`);
      // the forward's saved derivative (stored as float32: one more rounding) gives the same gradient
      be.geluForward({ out, inp: up(x), n, activation: act, deriv });
      const fromDeriv = be.alloc(n);
      be.geluBackward({ dinp: fromDeriv, inp: up(x), dout: up(w), n, activation: act, deriv });
      checkForward(get(fromDeriv), get(dinp), `${act} dinp from deriv`);
    });
  }

  test("relu at 0: value 0, derivative 0 (as PyTorch's backward)", () => {
    const out = be.alloc(3), dinp = be.alloc(3);
    be.geluForward({ out, inp: up([0, -0, 2]), n: 3, activation: "relu" });
    be.geluBackward({ dinp, inp: up([0, -0, 2]), dout: up([1, 1, 1]), n: 3, activation: "relu" });
    expect([...get(out), ...get(dinp)]).toEqual([0, 0, 2, 0, 0, 1]);
  });
});

// ---------------------------------------------------------------------------------------------------
// matmul, sumRows
// ---------------------------------------------------------------------------------------------------

describe("cpu matmul", () => {
  const M = 3, N = 5, K = 7; // odd, not multiples of 4 (exercises the unrolled loops' tails)
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      test(`forward transA=${transA} transB=${transB}, bias, accumulate`, () => {
        const a = randn(M * K, 10), b = randn(K * N, 11), bias = randn(N, 12), prev = randn(M * N, 13);
        const out = up(prev); // garbage for "="
        be.matmul({ out, a: up(a), b: up(b), M, N, K, transA, transB });
        checkForward(get(out), matmul64(a, b, { M, N, K, transA, transB }), "matmul =");
        const outB = be.alloc(M * N);
        be.matmul({ out: outB, a: up(a), b: up(b), bias: up(bias), M, N, K, transA, transB });
        checkForward(get(outB), matmul64(a, b, { M, N, K, transA, transB, bias }), "matmul + bias");
        const outAcc = up(prev);
        be.matmul({ out: outAcc, a: up(a), b: up(b), bias: up(bias), M, N, K, transA, transB, accumulate: true });
        const ref = matmul64(a, b, { M, N, K, transA, transB, bias }).map((v, i) => v + prev[i]!);
        checkForward(get(outAcc), ref, "matmul +=");
      });
    }
  }

  test("larger forward, K and N past the unroll width (N=37, K=66, both trans)", () => {
    const m = 5, n = 37, k = 66;
    const a = randn(m * k, 14), b = randn(k * n, 15);
    for (const transB of [false, true]) {
      const out = be.alloc(m * n);
      be.matmul({ out, a: up(a), b: up(b), M: m, N: n, K: k, transB });
      checkForward(get(out), matmul64(a, b, { M: m, N: n, K: k, transB }), `matmul transB=${transB}`);
    }
  });

  // The backward of y = x·W + b, as the autograd's linear rule issues it, against finite differences of
  // L = Σ (x·W + b)·w. dW (and for the tied head, W stored [N,K]) accumulate; dx is accumulated onto a
  // prefilled buffer and the prefill subtracted.
  for (const transW of [false, true]) {
    test(`linear backward via matmul (FD), W ${transW ? "[N,K] (transB)" : "[K,N]"}`, () => {
      const m = 3, k = 5, n = 7;
      const x = randn(m * k, 20), W = randn(k * n, 21), bias = randn(n, 22), w = randn(m * n, 23);
      const fwd = (xx: ArrayLike<number>, WW: ArrayLike<number>, bb: ArrayLike<number>) =>
        dot(matmul64(xx, WW, { M: m, N: n, K: k, transB: transW, bias: bb }), w);
      const dy = up(w);
      // dx = dy·Wᵀ   [m,k]
      const dx = be.alloc(m * k);
      be.matmul({ out: dx, a: dy, b: up(W), M: m, N: k, K: n, transB: !transW, accumulate: true });
      checkGrad(get(dx), (xx) => fwd(xx, W, bias), x, "dx");
      // dW = xᵀ·dy  [k,n]  or  dyᵀ·x  [n,k]
      const prev = randn(k * n, 24);
      const dW = up(prev);
      if (transW) be.matmul({ out: dW, a: dy, b: up(x), M: n, N: k, K: m, transA: true, accumulate: true });
      else be.matmul({ out: dW, a: up(x), b: dy, M: k, N: n, K: m, transA: true, accumulate: true });
      const dWonly = get(dW).map((v, i) => v - prev[i]!);
      checkGrad(dWonly, (WW) => fwd(x, WW, bias), W, "dW");
      // db = Σ_rows dy
      const db = be.alloc(n);
      be.sumRows({ out: db, inp: dy, M: m, N: n });
      checkGrad(get(db), (bb) => fwd(x, W, bb), bias, "db");
    });
  }

  test("transA and transB together, against FD of L = Σ (AᵀBᵀ)·w", () => {
    // out[M,N] = Σ_k a[k,i]·b[j,k]; dL/da[k,i] = Σ_j w[i,j]·b[j,k] = (w·b)ᵀ → matmul(transA: w stored ... )
    const a = randn(K * M, 30), b = randn(N * K, 31), w = randn(M * N, 32);
    const f = (aa: ArrayLike<number>) => dot(matmul64(aa, b, { M, N, K, transA: true, transB: true }), w);
    // da [K,M] = bᵀ[K,N]·wᵀ[N,M]: both operands transposed again
    const da = be.alloc(K * M);
    be.matmul({ out: da, a: up(b), b: up(w), M: K, N: M, K: N, transA: true, transB: true });
    checkGrad(get(da), f, a, "da (transA+transB)");
  });

  test("sumRows: =, +=", () => {
    const m = 5, n = 3;
    const x = randn(m * n, 40), prev = randn(n, 41);
    const ref = new Float64Array(n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) ref[j] = ref[j]! + x[i * n + j]!;
    const out = up(prev);
    be.sumRows({ out, inp: up(x), M: m, N: n });
    checkForward(get(out), ref, "sumRows =");
    const acc = up(prev);
    be.sumRows({ out: acc, inp: up(x), M: m, N: n, accumulate: true });
    checkForward(get(acc), ref.map((v, j) => v + prev[j]!), "sumRows +=");
  });

  test("out aliasing an input is an error", () => {
    const a = up(randn(4, 42));
    expect(() => be.matmul({ out: a, a, b: up(randn(4, 43)), M: 2, N: 2, K: 2 })).toThrow("alias");
  });
});

// ---------------------------------------------------------------------------------------------------
// layernorm
// ---------------------------------------------------------------------------------------------------

describe("cpu layernorm", () => {
  const N = 3, C = 7, eps = 1e-5;
  const x = randn(N * C, 50, 2).map((v, i) => Math.fround(v + (i % C === 0 ? 3 : 0))); // non-zero means
  const weight = randn(C, 51).map((v) => Math.fround(1 + 0.3 * v)), bias = randn(C, 52);

  test("forward, saved mean and rstd", () => {
    const out = be.alloc(N * C), mean = be.alloc(N), rstd = be.alloc(N);
    be.layernormForward({ out, mean, rstd, inp: up(x), weight: up(weight), bias: up(bias), N, C, eps });
    checkForward(get(out), layernorm64(x, weight, bias, N, C, eps), "layernorm out");
    for (let n = 0; n < N; n++) {
      const row = x.subarray(n * C, n * C + C);
      const mu = row.reduce((p, q) => p + q, 0) / C;
      const v = row.reduce((p, q) => p + (q - mu) ** 2, 0) / C; // biased, as torch
      expect(get(mean)[n]!).toBeCloseTo(mu, 5);
      expect(get(rstd)[n]!).toBeCloseTo(1 / Math.sqrt(v + eps), 5);
    }
    // mean/rstd may be omitted at inference
    const out2 = be.alloc(N * C);
    be.layernormForward({ out: out2, inp: up(x), weight: up(weight), bias: up(bias), N, C, eps });
    expect(Array.from(get(out2))).toEqual(Array.from(get(out)));
  });

  test("backward (FD): dinp =, dinp +=, dweight and dbias +=", () => {
    const out = be.alloc(N * C), mean = be.alloc(N), rstd = be.alloc(N);
    be.layernormForward({ out, mean, rstd, inp: up(x), weight: up(weight), bias: up(bias), N, C, eps });
    const w = randn(N * C, 53);
    const prevW = randn(C, 54), prevB = randn(C, 55), prevX = randn(N * C, 56);
    const dinp = up(prevX), dweight = up(prevW), dbias = up(prevB);
    const common = { dout: up(w), inp: up(x), weight: up(weight), mean, rstd, N, C };
    be.layernormBackward({ dinp, dweight, dbias, ...common });
    checkGrad(get(dinp), (xx) => dot(layernorm64(xx, weight, bias, N, C, eps), w), x, "layernorm dinp");
    checkGrad(
      get(dweight).map((v, i) => v - prevW[i]!),
      (ww) => dot(layernorm64(x, ww, bias, N, C, eps), w),
      weight,
      "layernorm dweight",
    );
    checkGrad(
      get(dbias).map((v, i) => v - prevB[i]!),
      (bb) => dot(layernorm64(x, weight, bb, N, C, eps), w),
      bias,
      "layernorm dbias",
    );
    const dinpAcc = up(prevX);
    be.layernormBackward({ dinp: dinpAcc, dweight: be.alloc(C), dbias: be.alloc(C), ...common, accumulate: true });
    checkForward(get(dinpAcc), prevX.map((p, i) => p + get(dinp)[i]!), "layernorm dinp +=");
  });
});

// ---------------------------------------------------------------------------------------------------
// attention
// ---------------------------------------------------------------------------------------------------

describe("cpu attention", () => {
  // B=2, T=5, C=6, NH=2 (HS=3, not a multiple of 4). Batch 0: right padding (last 2 tokens padding);
  // batch 1: left padding, so its query 0 sees no key at all (a fully masked row).
  const B = 2, T = 5, C = 6, NH = 2;
  const mask = [1, 1, 1, 0, 0, 0, 1, 1, 1, 1];
  const qkv = randn(B * T * 3 * C, 60);

  for (const withMask of [true, false]) {
    test(`forward ${withMask ? "with padding mask" : "causal only"}: out and att`, () => {
      const out = up(randn(B * T * C, 61)), att = up(randn(B * NH * T * T, 62)); // garbage: assigned
      be.attentionForward({ out, att, qkv: up(qkv), mask: withMask ? upI(mask) : undefined, B, T, C, NH });
      const ref = attention64(qkv, withMask ? mask : undefined, { B, T, C, NH });
      checkForward(get(out), ref.out, "attention out");
      checkForward(get(att), ref.att, "attention att");
      if (withMask) {
        // batch 1, query 0: fully masked → probabilities 0 and output 0 in every head
        for (let h = 0; h < NH; h++) {
          for (let s = 0; s < T; s++) expect(get(att)[((1 * NH + h) * T + 0) * T + s]).toBe(0);
        }
        for (let c = 0; c < C; c++) expect(get(out)[(1 * T + 0) * C + c]).toBe(0);
      }
    });
  }

  test("backward (FD) with a padding mask and a fully masked row; dqkv assigned", () => {
    const out = be.alloc(B * T * C), att = be.alloc(B * NH * T * T);
    be.attentionForward({ out, att, qkv: up(qkv), mask: upI(mask), B, T, C, NH });
    const w = randn(B * T * C, 63);
    const dqkv = up(randn(B * T * 3 * C, 64)); // garbage: must be overwritten
    be.attentionBackward({ dqkv, dout: up(w), qkv: up(qkv), att, B, T, C, NH });
    checkGrad(get(dqkv), (xx) => dot(attention64(xx, mask, { B, T, C, NH }).out, w), qkv, "attention dqkv");
  });

  test("T = 1 forward and backward (each query sees only itself)", () => {
    const b1 = 3, t1 = 1, c1 = 10, nh = 2;
    const x = randn(b1 * t1 * 3 * c1, 65), w = randn(b1 * t1 * c1, 66);
    const m = [1, 0, 1]; // batch 1's only token is padding: fully masked
    const out = be.alloc(b1 * c1), att = be.alloc(b1 * nh);
    be.attentionForward({ out, att, qkv: up(x), mask: upI(m), B: b1, T: t1, C: c1, NH: nh });
    checkForward(get(out), attention64(x, m, { B: b1, T: t1, C: c1, NH: nh }).out, "attention T=1 out");
    expect(Array.from(get(att))).toEqual([1, 1, 0, 0, 1, 1]);
    const dqkv = be.alloc(x.length);
    be.attentionBackward({ dqkv, dout: up(w), qkv: up(x), att, B: b1, T: t1, C: c1, NH: nh });
    checkGrad(get(dqkv), (xx) => dot(attention64(xx, m, { B: b1, T: t1, C: c1, NH: nh }).out, w), x, "T=1 dqkv");
  });

  test("attentionCached token by token (and a prefill chunk) equals attentionForward", () => {
    const Tmax = 7; // the cache is longer than the sequence
    const HS = C / NH;
    const full = be.alloc(B * T * C);
    be.attentionForward({ out: full, att: be.alloc(B * NH * T * T), qkv: up(qkv), mask: upI(mask), B, T, C, NH });
    // the mask over the cache: the sequence's mask, then real tokens (unused positions are never visible)
    const cacheMask = upI([...mask.slice(0, T), 1, 1, ...mask.slice(T), 1, 1]);
    for (const chunks of [[1, 1, 1, 1, 1], [3, 1, 1], [5]]) {
      const kcache = be.alloc(B * NH * Tmax * HS), vcache = be.alloc(B * NH * Tmax * HS);
      const got = new Float32Array(B * T * C);
      let pos0 = 0;
      for (const Tn of chunks) {
        // slice qkv rows pos0 … pos0+Tn−1 of every batch into a [B,Tn,3C] buffer
        const part = new Float32Array(B * Tn * 3 * C);
        for (let b = 0; b < B; b++) {
          part.set(qkv.subarray((b * T + pos0) * 3 * C, (b * T + pos0 + Tn) * 3 * C), b * Tn * 3 * C);
        }
        const out = be.alloc(B * Tn * C);
        be.attentionCached({ out, qkv: up(part), kcache, vcache, mask: cacheMask, B, Tn, pos0, Tmax, C, NH });
        for (let b = 0; b < B; b++) {
          got.set(get(out).subarray(b * Tn * C, (b + 1) * Tn * C), (b * T + pos0) * C);
        }
        pos0 += Tn;
      }
      // Same float64 sums over the same float32 probabilities: agreement to float32 rounding.
      checkForward(got, get(full), `attentionCached chunks ${chunks.join(",")}`);
      // the caches hold k and v at [b,h,t,:]
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          for (let h = 0; h < NH; h++) {
            for (let i = 0; i < HS; i++) {
              const src = (b * T + t) * 3 * C + h * HS + i, dst = ((b * NH + h) * Tmax + t) * HS + i;
              expect(get(kcache)[dst]).toBe(Math.fround(qkv[src + C]!));
              expect(get(vcache)[dst]).toBe(Math.fround(qkv[src + 2 * C]!));
            }
          }
        }
      }
    }
    expect(() =>
      be.attentionCached({
        out: be.alloc(B * C),
        qkv: up(new Float32Array(B * 3 * C)),
        kcache: be.alloc(B * NH * Tmax * HS),
        vcache: be.alloc(B * NH * Tmax * HS),
        B,
        Tn: 1,
        pos0: Tmax,
        Tmax,
        C,
        NH,
      })
    ).toThrow("exceed the cache");
  });
});

// ---------------------------------------------------------------------------------------------------
// embedding
// ---------------------------------------------------------------------------------------------------

describe("cpu embedding", () => {
  const B = 2, T = 3, C = 5, V = 4, P = 6;
  const ids = [2, 0, 2, 2, 3, 2]; // token 2 repeats, across batches; token 1 unused
  const wte = randn(V * C, 70), wpe = randn(P * C, 71);
  const fwd64 = (te: ArrayLike<number>, pe: ArrayLike<number>, pos0 = 0) => {
    const out = new Float64Array(B * T * C);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) out[(b * T + t) * C + c] = te[ids[b * T + t]! * C + c]! + pe[(pos0 + t) * C + c]!;
      }
    }
    return out;
  };

  test("forward, with and without pos0", () => {
    for (const pos0 of [0, 2]) {
      const out = be.alloc(B * T * C);
      be.embeddingForward({ out, ids: upI(ids), wte: up(wte), wpe: up(wpe), B, T, C, pos0 });
      checkForward(get(out), fwd64(wte, wpe, pos0), `embedding pos0=${pos0}`);
    }
    expect(() =>
      be.embeddingForward({
        out: be.alloc(B * T * C),
        ids: upI([0, 0, 0, 0, 0, 4]),
        wte: up(wte),
        wpe: up(wpe),
        B,
        T,
        C,
      })
    ).toThrow("outside [0, 4)");
  });

  test("backward (FD), repeated ids, accumulating onto prefilled gradients, deterministic", () => {
    const w = randn(B * T * C, 72);
    const prevTe = randn(V * C, 73), prevPe = randn(T * C, 74);
    const dwte = up(prevTe), dwpe = up(prevPe);
    be.embeddingBackward({ dwte, dwpe, dout: up(w), ids: upI(ids), B, T, C, V });
    checkGrad(get(dwte).map((v, i) => v - prevTe[i]!), (te) => dot(fwd64(te, wpe), w), wte, "dwte");
    // dwpe covers rows 0…T−1 of wpe (positions beyond T get no gradient, so compare the first T rows)
    const fPe = (pe: Float64Array) => dot(fwd64(wte, Float64Array.from([...pe, ...wpe.subarray(T * C)])), w);
    checkGrad(get(dwpe).map((v, i) => v - prevPe[i]!), fPe, wpe.slice(0, T * C), "dwpe");
    // running it again from the same start gives the identical bits
    const dwte2 = up(prevTe), dwpe2 = up(prevPe);
    be.embeddingBackward({ dwte: dwte2, dwpe: dwpe2, dout: up(w), ids: upI(ids), B, T, C, V });
    expect(Array.from(get(dwte2))).toEqual(Array.from(get(dwte)));
    // the unused token's row is untouched
    for (let c = 0; c < C; c++) expect(get(dwte)[1 * C + c]).toBe(Math.fround(prevTe[1 * C + c]!));
  });
});

// ---------------------------------------------------------------------------------------------------
// cross-entropy, sum
// ---------------------------------------------------------------------------------------------------

describe("cpu crossEntropy", () => {
  const N = 5, V = 7;
  const logits = randn(N * V, 80, 2);
  const targets = [3, -100, 0, 6, -100]; // two ignored rows
  const scale = 1 / 3; // 1 / number of supervised rows

  test("losses and dlogits (FD of scale·Σ losses); ignored rows are 0", () => {
    const losses = up(randn(N, 81)), dlogits = up(randn(N * V, 82)); // garbage: assigned
    be.crossEntropy({ losses, dlogits, logits: up(logits), targets: upI(targets), N, V, scale });
    checkForward(get(losses), crossEntropy64(logits, targets, N, V), "losses");
    expect(get(losses)[1]).toBe(0);
    checkGrad(
      get(dlogits),
      (l) => scale * dot(crossEntropy64(l, targets, N, V), new Float64Array(N).fill(1)),
      logits,
      "dlogits",
    );
    for (let v = 0; v < V; v++) expect(get(dlogits)[4 * V + v]).toBe(0);
  });

  test("in place (dlogits = logits) gives the same numbers; losses only when dlogits is omitted", () => {
    const ref = be.alloc(N * V), refLoss = be.alloc(N);
    be.crossEntropy({ losses: refLoss, dlogits: ref, logits: up(logits), targets: upI(targets), N, V, scale });
    const buf = up(logits), losses = be.alloc(N);
    be.crossEntropy({ losses, dlogits: buf, logits: buf, targets: upI(targets), N, V, scale });
    expect(Array.from(get(buf))).toEqual(Array.from(get(ref)));
    expect(Array.from(get(losses))).toEqual(Array.from(get(refLoss)));
    const only = up(logits), l2 = be.alloc(N);
    be.crossEntropy({ losses: l2, logits: only, targets: upI(targets), N, V, scale });
    expect(Array.from(get(l2))).toEqual(Array.from(get(refLoss)));
    expect(Array.from(get(only))).toEqual(Array.from(Float32Array.from(logits))); // untouched
  });

  test("numerically stable for large logits; bad targets are an error", () => {
    const big = [1000, 999, 0, -1000]; // naive exp overflows
    const losses = be.alloc(1), d = be.alloc(4);
    be.crossEntropy({ losses, dlogits: d, logits: up(big), targets: upI([1]), N: 1, V: 4, scale: 1 });
    // −log softmax = log(1 + e⁻¹ + …) + 1 ≈ 1.3132617; softmax ≈ [0.7311, 0.2689, 0, 0]
    expect(get(losses)[0]!).toBeCloseTo(1 + Math.log(1 + Math.exp(-1)), 5);
    expect(get(d)[0]!).toBeCloseTo(1 / (1 + Math.exp(-1)), 6);
    expect(get(d)[1]!).toBeCloseTo(Math.exp(-1) / (1 + Math.exp(-1)) - 1, 6);
    expect(() => be.crossEntropy({ losses, logits: up(big), targets: upI([4]), N: 1, V: 4, scale: 1 })).toThrow(
      "outside [0, 4)",
    );
  });

  test("sum: s, =, +=", () => {
    const x = randn(9, 83), out = up([5]);
    const ref = x.reduce((p, q) => p + q, 0);
    be.sum({ out, inp: up(x), n: 9 });
    expect(get(out)[0]!).toBeCloseTo(ref, 5);
    be.sum({ out, inp: up(x), n: 9, s: 0.5, accumulate: true });
    expect(get(out)[0]!).toBeCloseTo(1.5 * ref, 5);
  });
});

// ---------------------------------------------------------------------------------------------------
// optimizer
// ---------------------------------------------------------------------------------------------------

describe("cpu optimizer", () => {
  test("globalNorm over several buffers", () => {
    const a = randn(7, 90), b = randn(3, 91), out = up([123]);
    be.globalNorm({ out, bufs: [up(a), up(b)] });
    const ref = Math.sqrt([...a, ...b].reduce((p, q) => p + q * q, 0));
    expect(get(out)[0]!).toBeCloseTo(ref, 5);
  });

  /**
   * torch.optim.AdamW (single-tensor path) by hand, in float64, with every state tensor rounded to float32
   * after each step as torch stores it. clip = min(1, maxNorm / (norm + 1e-6)) as clip_grad_norm_.
   */
  function adamwRef(
    p0: Float64Array,
    grads: Float64Array[],
    o: { lr: number; b1: number; b2: number; eps: number; wd: number; maxNorm?: number },
  ): Float64Array {
    const p = p0.slice(), m = new Float64Array(p.length), v = new Float64Array(p.length);
    grads.forEach((grad, s) => {
      const step = s + 1;
      const norm = Math.fround(Math.sqrt(grad.reduce((q, g) => q + g * g, 0)));
      const clip = o.maxNorm === undefined ? 1 : Math.min(1, o.maxNorm / (norm + 1e-6));
      for (let i = 0; i < p.length; i++) {
        const g = grad[i]! * clip;
        p[i] = p[i]! * (1 - o.lr * o.wd);
        m[i] = Math.fround(o.b1 * m[i]! + (1 - o.b1) * g);
        v[i] = Math.fround(o.b2 * v[i]! + (1 - o.b2) * g * g);
        const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - o.b2 ** step) + o.eps;
        p[i] = Math.fround(p[i]! - (o.lr / (1 - o.b1 ** step)) * (m[i]! / denom));
      }
    });
    return p;
  }

  const n = 11;
  for (
    const [name, opts] of [
      ["no clipping", { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01 }],
      ["clipping to 1.0", { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, maxNorm: 1.0 }],
      ["clip inactive (maxNorm 100), β1 = 0.3 (other lerp branch)", {
        lr: 1e-2,
        b1: 0.3,
        b2: 0.99,
        eps: 1e-6,
        wd: 0.1,
        maxNorm: 100,
      }],
    ] as const
  ) {
    test(`adamw, 3 steps, ${name}`, () => {
      const p0 = randn(n, 92);
      const grads = [randn(n, 93, 2), randn(n, 94, 2), randn(n, 95, 0.01)];
      grads[0]![3] = 0; // a zero gradient on the first step
      const param = up(p0), m = be.alloc(n), v = be.alloc(n), norm = be.alloc(1);
      grads.forEach((g, s) => {
        const grad = up(g);
        be.globalNorm({ out: norm, bufs: [grad] });
        const maxNorm = "maxNorm" in opts ? opts.maxNorm : undefined;
        be.adamw({
          param,
          grad,
          m,
          v,
          n,
          lr: opts.lr,
          beta1: opts.b1,
          beta2: opts.b2,
          eps: opts.eps,
          weightDecay: opts.wd,
          step: s + 1,
          ...(maxNorm === undefined ? {} : { norm, maxNorm }),
        });
        expect(Array.from(get(grad))).toEqual(Array.from(Float32Array.from(g))); // grad not modified
      });
      const ref = adamwRef(p0, grads, { ...opts });
      // Same formula in float64 with float32 state: differences are float32 rounding of params of size
      // ~1 (6e-8) times a few steps, plus the lerp-vs-β1·m rounding in m (≤ 1 ulp): 1e-6 is ample, while
      // a wrong bias correction or decay order moves parameters by ≥ 1e-5.
      assertClose(get(param), ref, { atol: 1e-6 }, `adamw ${name}`);
      // and it actually moved (lr·3 steps ≈ 3e-3 per element)
      expect(maxAbs(get(param).map((x, i) => x - p0[i]!))).toBeGreaterThan(1e-3);
    });
  }

  test("adamw argument errors", () => {
    const b = be.alloc(2);
    const base = { param: b, grad: b, m: be.alloc(2), v: be.alloc(2), n: 2, lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8 };
    expect(() => be.adamw({ ...base, weightDecay: 0, step: 0 })).toThrow("step must count from 1");
    expect(() => be.adamw({ ...base, weightDecay: 0, step: 1, norm: be.alloc(1) })).toThrow("without maxNorm");
  });
});
