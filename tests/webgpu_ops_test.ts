/**
 * Every WGSL kernel against the CPU reference op (src/backend/cpu.ts, the spec), at awkward shapes: T = 1,
 * C not a multiple of 4 or of the workgroup size, row counts that are not multiples of a tile, fully
 * masked rows, in-place cross-entropy, accumulate flags, transposes, the KV cache token by token, and
 * grids above 65535 workgroups.
 *
 * Without a WebGPU adapter the tests are skipped with a notice, except under CI (`CI` set), where a
 * missing adapter is a failure. Sizes are small: lavapipe runs at a few GFLOP/s.
 *
 * Tolerances: float32 everywhere. The CPU often sums in float64 and in a different order than the GPU
 * (trees, tiles), so sums of K terms of size ~1 differ by about K·2⁻²⁴; each test states its bound.
 * Where both sides do the same float32 additions in the same order (embedding backward) the comparison is
 * exact.
 */

import { describe, expect, test } from "bun:test";
import type { Backend, Buf } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { type Data, onBoth, webgpuForTests } from "../src/testing/backends.ts";
import {
  type MatmulKernel,
  parseAttentionKernel,
  parseFlushEvery,
  splitKSlices,
  WebGpuBackend,
} from "../src/backend/webgpu.ts";
import { assertClose, type Tolerance } from "../src/testing/compare.ts";
import { formatProfile } from "../src/backend/profile.ts";
import { formatTuning, matmulCandidates, tuneKey } from "../src/backend/matmul_tuner.ts";

const available = await webgpuForTests("webgpu_ops_test");
const gpuTest = (name: string, fn: () => Promise<void>) => test.skipIf(!available)(name, fn, 120_000);

const backends = new Map<MatmulKernel, WebGpuBackend>();
/** One shared backend per matmul kernel (creating a device is slow on lavapipe). */
async function gpu(matmul: MatmulKernel = "tiled"): Promise<WebGpuBackend> {
  let be = backends.get(matmul);
  if (!be) {
    be = await WebGpuBackend.create({ matmul });
    backends.set(matmul, be);
  }
  return be;
}
const cpu = new CpuBackend({ matmul: "reference" }); // the spec: plain TypeScript loops
let flash: WebGpuBackend | undefined; // attention "flash"
let rowsAttention: WebGpuBackend | undefined; // attention "rows" (the default is "matmul")

/** A small deterministic PRNG (mulberry32), uniform in [lo, hi). */
function rng(seed: number): (lo?: number, hi?: number) => number {
  let s = seed >>> 0;
  return (lo = -1, hi = 1) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  };
}

function randn(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r(lo, hi);
  return a;
}

/** {@link onBoth} with this file's CPU reference. */
function both(
  g: Backend,
  inputs: Record<string, Data>,
  op: (be: Backend, b: Record<string, Buf>) => void,
  outputs: readonly string[],
): Promise<{ cpu: Record<string, Data>; gpu: Record<string, Data> }> {
  return onBoth(cpu, g, inputs, op, outputs);
}

function close(r: { cpu: Record<string, Data>; gpu: Record<string, Data> }, name: string, tol: Tolerance, what = "") {
  assertClose(r.gpu[name]!, r.cpu[name]!, tol, `${what} ${name}`.trim());
}

// ---------------------------------------------------------------------------------------------------

/** One product on the GPU against the CPU reference, from fresh inputs drawn with seeds seed … seed + 3. */
async function checkMatmul(
  g: Backend,
  s: { M: number; N: number; K: number; transA: boolean; transB: boolean; bias: boolean; accumulate: boolean },
  seed: number,
  tol: Tolerance,
  what: string,
): Promise<void> {
  const { M, N, K } = s;
  const inputs = {
    a: randn(M * K, seed),
    b: randn(K * N, seed + 1),
    bias: randn(N, seed + 2),
    out: randn(M * N, seed + 3),
  };
  const r = await both(g, inputs, (be, x) =>
    be.matmul({
      out: x.out!,
      a: x.a!,
      b: x.b!,
      bias: s.bias ? x.bias : undefined,
      M,
      N,
      K,
      transA: s.transA,
      transB: s.transB,
      accumulate: s.accumulate,
    }), ["out"]);
  close(r, "out", tol, what);
}

describe("webgpu backend", () => {
  gpuTest("device and memory: alloc zeroes, write, copy, zero, free and reuse, i32", async () => {
    const g = await gpu();
    expect(g.description).toContain("webgpu");
    const a = g.alloc(7, "f32", "a");
    expect(Array.from(await g.read(a))).toEqual([0, 0, 0, 0, 0, 0, 0]);
    g.write(a, new Float32Array([1, 2, 3]), 2);
    expect(Array.from(await g.read(a))).toEqual([0, 0, 1, 2, 3, 0, 0]);
    const b = g.upload(new Float32Array([9, 8, 7, 6, 5, 4, 3]), "b");
    g.copy(a, b, 3, 4, 1); // a[4..7) = b[1..4)
    expect(Array.from(await g.read(a))).toEqual([0, 0, 1, 2, 8, 7, 6]);
    g.copy(a, a, 2, 0, 5); // same buffer: a[0..2) = a[5..7)
    expect(Array.from(await g.read(a))).toEqual([7, 6, 1, 2, 8, 7, 6]);
    g.zero(b);
    expect(Array.from(await g.read(b))).toEqual([0, 0, 0, 0, 0, 0, 0]);
    g.free(a);
    const c = g.alloc(7, "f32", "c"); // comes from the pool: must be zeroed again
    expect(Array.from(await g.read(c))).toEqual([0, 0, 0, 0, 0, 0, 0]);
    const ids = g.upload(new Int32Array([-100, 3, 2147483647]), "ids");
    const back = await g.read(ids);
    expect(back).toBeInstanceOf(Int32Array);
    expect(Array.from(back)).toEqual([-100, 3, 2147483647]);
    expect(() => g.alloc(2 ** 31, "f32", "huge activation")).toThrow(/huge activation/);
    g.free(c);
    expect(() => g.zero(c)).toThrow(/freed/);
    // Clear errors instead of WebGPU validation failures: a too-small buffer, a written buffer bound twice.
    const small = g.alloc(3, "f32", "small");
    expect(() => g.geluForward({ out: small, inp: b, n: 7 })).toThrow(/out \("small"\) has 3 elements, needs 7/);
    expect(() => g.geluForward({ out: b, inp: b, n: 7 })).toThrow(/bound twice and written/);
    expect(() => g.attentionForward({ out: b, att: b, qkv: b, B: 1, T: 1, C: 5, NH: 2 })).toThrow(/divisible/);
    g.free(small);
    for (const x of [b, ids]) g.free(x);
  });

  // --------------------------------------------------------------------------------------------- matmul
  for (const kernel of ["tiled", "naive", "large", "large-f16", "auto", "tune"] as const) {
    gpuTest(`matmul (${kernel}): transposes, bias, accumulate, edge tiles`, async () => {
      const g = await gpu(kernel);
      // (M, N, K): single element; sizes below one tile; crossing 64- and 128-row/column tiles and 8- and
      // 16-deep k steps.
      const shapes: [number, number, number][] = [
        [1, 1, 1],
        [5, 7, 3],
        [67, 70, 35],
        [130, 3, 17],
        [2, 129, 64],
        [131, 260, 9],
      ];
      // auto: the small shapes take the tiled kernel; this one (11 × 11 = 121 blocks of 128) the large one;
      // the last two are split-K (few blocks, K ≥ 1024: 6 and 4 slices, the last slice partial)
      if (kernel === "auto") shapes.push([1300, 1290, 5], [5, 7, 3000], [70, 130, 2049]);
      if (kernel === "tiled") shapes.push([5, 7, 3000], [70, 130, 2049]); // the default splits K too
      // tune: each shape's first call times the candidates and runs auto's choice; later calls (the other
      // layouts and flags) run the chosen one, the split-K candidates among them here
      if (kernel === "tune") shapes.push([5, 7, 3000]);
      // f16: each input rounded to 11 significant bits (2⁻¹¹ relative), 8-term partial sums in f16.
      const f16 = kernel === "large-f16";
      let seed = 1;
      for (const [M, N, K] of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            // every combination for the small kernels; the large ones compile slowly under Dawn on lavapipe
            // (seconds per variant), so bias and accumulate are checked there with A transposed only
            const split = (kernel === "auto" || kernel === "tune" || kernel === "tiled") && K >= 1024;
            const combos = kernel === "tiled" || kernel === "naive" || split || (transA && !transB)
              ? [[false, false], [true, false], [true, true]] as const
              : [[false, false]] as const;
            for (const [bias, accumulate] of combos) {
              // K float32 products of |x| < 1 summed in a different order (CPU float64): error ≲ K·2⁻²⁴·√K.
              const tol = f16 ? { atol: 3e-3 * Math.sqrt(K) + 1e-3, rtol: 2e-3 } : { atol: 2e-6 * K, rtol: 1e-5 };
              const args = { M, N, K, transA, transB, bias, accumulate };
              await checkMatmul(g, args, seed, tol, `M${M} N${N} K${K} tA${+transA} tB${+transB}`);
              seed += 4;
            }
          }
        }
      }
    });
  }

  gpuTest("sumRows: M = 1, columns not a multiple of 16, rows not of the 16 lanes, accumulate", async () => {
    const g = await gpu();
    for (const [M, N] of [[1, 5], [37, 131], [300, 3], [1000, 70]] as const) {
      for (const accumulate of [false, true]) {
        const r = await both(
          g,
          { inp: randn(M * N, M + N), out: randn(N, 7) },
          (be, x) => be.sumRows({ out: x.out!, inp: x.inp!, M, N, accumulate }),
          ["out"],
        );
        // M float32 additions; the CPU may sum in float64: ≲ M·2⁻²⁴ relative to the running sum.
        close(r, "out", { atol: 1e-6 * M, rtol: 1e-6 }, `M${M} N${N}`);
      }
    }
  });

  // --------------------------------------------------------------------------------------------- elementwise
  gpuTest("add: out = a (in place), out = b, accumulate, n not a multiple of 256", async () => {
    const g = await gpu();
    const n = 1003;
    const inputs = { a: randn(n, 1), b: randn(n, 2), out: randn(n, 3) };
    // One float32 addition (two with accumulate), the same on both sides up to float64 rounding on the CPU.
    const tol = { atol: 1e-6, rtol: 1e-6 };
    for (const accumulate of [false, true]) {
      close(
        await both(g, inputs, (be, x) => be.add({ out: x.out!, a: x.a!, b: x.b!, n, accumulate }), ["out"]),
        "out",
        tol,
      );
      close(
        await both(g, inputs, (be, x) => be.add({ out: x.a!, a: x.a!, b: x.b!, n, accumulate }), ["a"]),
        "a",
        tol,
      );
      close(
        await both(g, inputs, (be, x) => be.add({ out: x.b!, a: x.a!, b: x.b!, n, accumulate }), ["b"]),
        "b",
        tol,
      );
      close(
        await both(g, inputs, (be, x) => be.add({ out: x.a!, a: x.a!, b: x.a!, n, accumulate }), ["a"]),
        "a",
        tol,
      );
    }
  });

  gpuTest("scale", async () => {
    const g = await gpu();
    const r = await both(g, { x: randn(1003, 4) }, (be, x) => be.scale({ buf: x.x!, n: 1000, s: -0.37 }), ["x"]);
    // s travels as float32 (the CPU multiplies by the float64 s): two roundings, ≤ 2⁻²³ relative. The last 3
    // elements (beyond n) must come back untouched.
    close(r, "x", { atol: 0, rtol: 2.4e-7 });
  });

  gpuTest("gelu forward and backward, including saturated inputs", async () => {
    const g = await gpu();
    const n = 1003;
    const inp = randn(n, 5, -6, 6);
    inp[0] = 40, inp[1] = -40, inp[2] = 0, inp[3] = 1e-4; // tanh saturation (NaN-prone forms) and tiny inputs
    const inputs = { inp, dout: randn(n, 6), out: new Float32Array(n), dinp: randn(n, 7) };
    // exp / tanh in WGSL have a few ULP of error (the spec allows 3 + 2|x| ULP for exp): 1e-5 relative.
    const r = await both(g, inputs, (be, x) => be.geluForward({ out: x.out!, inp: x.inp!, n }), ["out"]);
    close(r, "out", { atol: 2e-6, rtol: 1e-5 });
    for (const accumulate of [false, true]) {
      const rb = await both(
        g,
        inputs,
        (be, x) => be.geluBackward({ dinp: x.dinp!, inp: x.inp!, dout: x.dout!, n, accumulate }),
        ["dinp"],
      );
      close(rb, "dinp", { atol: 5e-6, rtol: 1e-5 });
    }
  });

  // The other MLP activations (the ACTIVATION override). The exact GELU's erfc is Numerical Recipes' fit
  // (relative error < 1.2e-7) against the CPU's float64 erfc; exp's few ULP and the rounding of −z² in its
  // argument grow with z², so the left tail, where the values are tiny, is covered by atol.
  for (const activation of ["gelu", "relu", "silu", "quick_gelu"] as const) {
    gpuTest(`activation ${activation} forward and backward, including saturated inputs`, async () => {
      const g = await gpu();
      const n = 1003;
      const inp = randn(n, 8, -6, 6);
      inp[0] = 40, inp[1] = -40, inp[2] = 0, inp[3] = 1e-4, inp[4] = -1e-4, inp[5] = -100, inp[6] = 100;
      const inputs = { inp, dout: randn(n, 9), out: new Float32Array(n), dinp: randn(n, 10) };
      const r = await both(g, inputs, (be, x) => be.geluForward({ out: x.out!, inp: x.inp!, n, activation }), ["out"]);
      close(r, "out", { atol: 2e-6, rtol: 1e-5 }, activation);
      for (const accumulate of [false, true]) {
        const rb = await both(
          g,
          inputs,
          (be, x) => be.geluBackward({ dinp: x.dinp!, inp: x.inp!, dout: x.dout!, n, accumulate, activation }),
          ["dinp"],
        );
        close(rb, "dinp", { atol: 5e-6, rtol: 1e-5 }, activation);
      }
    });
  }

  // --------------------------------------------------------------------------------------------- embedding
  gpuTest("embedding forward (pos0, position ids) and backward with repeated ids", async () => {
    const g = await gpu();
    const [B, T, C, V, P] = [3, 5, 7, 11, 9];
    const ids = new Int32Array([1, 1, 4, 1, 0, 10, 4, 4, 4, 2, 1, 0, 0, 10, 3]);
    const inputs = {
      ids,
      wte: randn(V * C, 1),
      wpe: randn(P * C, 2),
      out: new Float32Array(B * T * C),
      dout: randn(B * T * C, 3),
      dwte: randn(V * C, 4),
      dwpe: randn(P * C, 5),
    };
    for (const pos0 of [0, 4]) {
      const r = await both(
        g,
        inputs,
        (be, x) => be.embeddingForward({ out: x.out!, ids: x.ids!, wte: x.wte!, wpe: x.wpe!, B, T, C, pos0 }),
        ["out"],
      );
      close(r, "out", { atol: 0 }); // one float32 addition on both sides: exact
    }
    // position ids per token (left-padded batched generation): each row its own positions
    const positions = new Int32Array([0, 0, 0, 1, 2, 8, 7, 6, 5, 4, 0, 1, 2, 3, 4]);
    const rp = await both(
      g,
      { ...inputs, positions },
      (be, x) =>
        be.embeddingForward({
          out: x.out!,
          ids: x.ids!,
          wte: x.wte!,
          wpe: x.wpe!,
          B,
          T,
          C,
          pos0: 4, // ignored beside positions
          positions: x.positions!,
        }),
      ["out"],
    );
    close(rp, "out", { atol: 0 });
    const r = await both(
      g,
      inputs,
      (be, x) => be.embeddingBackward({ dwte: x.dwte!, dwpe: x.dwpe!, dout: x.dout!, ids: x.ids!, B, T, C, V }),
      ["dwte", "dwpe"],
    );
    // The GPU chains positions of equal ids and adds in position order, as the CPU loop does: exact.
    close(r, "dwte", { atol: 0 });
    close(r, "dwpe", { atol: 0 });
  });

  // --------------------------------------------------------------------------------------------- layernorm
  gpuTest("layernorm forward and backward: N = 1 and 100, C = 3 and C = 130, stats omitted, accumulate", async () => {
    const g = await gpu();
    for (const [N, C] of [[1, 3], [5, 130], [4, 1], [100, 37]] as const) {
      const inputs = {
        inp: randn(N * C, N + C, -2, 3),
        weight: randn(C, 2),
        bias: randn(C, 3),
        out: new Float32Array(N * C),
        mean: new Float32Array(N),
        rstd: new Float32Array(N),
        dout: randn(N * C, 4),
        dinp: randn(N * C, 5),
        dweight: randn(C, 6),
        dbias: randn(C, 7),
      };
      const eps = 1e-5;
      const fwd = (be: Backend, x: Record<string, Buf>) =>
        be.layernormForward({
          out: x.out!,
          mean: x.mean,
          rstd: x.rstd,
          inp: x.inp!,
          weight: x.weight!,
          bias: x.bias!,
          N,
          C,
          eps,
        });
      const r = await both(g, inputs, fwd, ["out", "mean", "rstd"]);
      // Tree vs sequential sums over C; rstd can reach 1/√eps ≈ 316 when C = 1 (zero variance), so relative.
      close(r, "out", { atol: 1e-5, rtol: 1e-5 }, `N${N} C${C}`);
      close(r, "mean", { atol: 1e-6, rtol: 1e-5 }, `N${N} C${C}`);
      close(r, "rstd", { atol: 1e-6, rtol: 1e-4 }, `N${N} C${C}`);
      const r2 = await both(
        g,
        inputs,
        (be, x) => be.layernormForward({ out: x.out!, inp: x.inp!, weight: x.weight!, bias: x.bias!, N, C, eps }),
        ["out"],
      );
      close(r2, "out", { atol: 1e-5, rtol: 1e-5 }, `no stats N${N} C${C}`);
      for (const accumulate of [false, true]) {
        const rb = await both(g, inputs, (be, x) => {
          fwd(be, x);
          be.layernormBackward({
            dinp: x.dinp!,
            dweight: x.dweight!,
            dbias: x.dbias!,
            dout: x.dout!,
            inp: x.inp!,
            weight: x.weight!,
            mean: x.mean!,
            rstd: x.rstd!,
            N,
            C,
            accumulate,
          });
        }, ["dinp", "dweight", "dbias"]);
        // dinp = rstd·(g − mean(g) − x̂·mean(g·x̂)): cancellation between terms of size ~rstd; relative 1e-4.
        close(rb, "dinp", { atol: 2e-5, rtol: 1e-4 }, `N${N} C${C}`);
        close(rb, "dweight", { atol: 1e-5, rtol: 1e-5 }, `N${N} C${C}`);
        close(rb, "dbias", { atol: 1e-6, rtol: 1e-6 }, `N${N} C${C}`);
      }
    }
  });

  // --------------------------------------------------------------------------------------------- attention
  // [B, T, C, NH]: T = 1; HS = 4; HS = 5 (C not a multiple of 4); T above the 64-invocation workgroup.
  const attnShapes: [number, number, number, number][] = [[2, 1, 8, 2], [2, 7, 12, 3], [1, 9, 10, 2], [1, 70, 6, 1]];
  function attnMask(B: number, T: number): Int32Array {
    const m = new Int32Array(B * T).fill(1);
    m[0] = 0; // batch 0: the first position is padding, so query t = 0 sees no key at all
    if (T > 2) m[2] = 0;
    if (B > 1) m.fill(0, T, 2 * T); // batch 1: fully padded (every row sees nothing)
    return m;
  }

  /**
   * attentionForward then attentionBackward of one shape on the CPU and on `g`, from the same inputs; `att`
   * starts as noise (whatever a kernel saves must be written, not assumed zero) and is long enough for both
   * the probabilities and the flash kernels' statistics.
   */
  function attentionBoth(
    g: Backend,
    [B, T, C, NH]: [number, number, number, number],
    masked: boolean,
    dropout: { p: number; seed: number } | undefined,
    outputs: readonly string[],
  ) {
    const inputs = {
      qkv: randn(B * T * 3 * C, B + T + C, -2, 2),
      mask: attnMask(B, T),
      out: new Float32Array(B * T * C),
      att: randn(Math.max(B * NH * T * T, 2 * B * NH * T), 3),
      dout: randn(B * T * C, 9),
      dqkv: randn(B * T * 3 * C, 10), // must be overwritten (=)
    };
    const what = `B${B} T${T} C${C} NH${NH} mask${+masked} dropout${dropout ? dropout.p : 0}`;
    const result = both(g, inputs, (be, x) => {
      const mask = masked ? x.mask : undefined;
      const shape = { qkv: x.qkv!, att: x.att!, mask, B, T, C, NH, dropout };
      be.attentionForward({ ...shape, out: x.out! });
      be.attentionBackward({ ...shape, dqkv: x.dqkv!, dout: x.dout! });
    }, outputs);
    return result.then((r) => ({ r, what }));
  }
  const noDropout = undefined, dropout = { p: 0.2, seed: 77 };

  gpuTest('attention "rows": T = 1, odd head sizes, padding mask, fully masked rows, dropout', async () => {
    const g = rowsAttention ??= await WebGpuBackend.create({ attention: "rows" });
    for (const [B, T, C, NH] of attnShapes) {
      for (const masked of [false, true]) {
        for (const drop of [noDropout, dropout]) {
          const { r, what } = await attentionBoth(g, [B, T, C, NH], masked, drop, ["out", "att", "dqkv"]);
          // exp with a few ULP, sums over ≤ 70 keys in another order: 1e-5 absolute on values of size ~1.
          close(r, "att", { atol: 2e-6, rtol: 1e-5 }, what);
          close(r, "out", { atol: 1e-5, rtol: 1e-5 }, what);
          close(r, "dqkv", { atol: 2e-5, rtol: 1e-4 }, what);
          if (masked && B > 1) {
            // batch 1 is fully padded: every output and gradient there is exactly 0
            expect(Array.from(r.gpu.out!.subarray(T * C, 2 * T * C)).every((v) => v === 0)).toBe(true);
          }
        }
      }
    }
  });

  gpuTest(
    "flash attention (online softmax, P recomputed): the CPU's out and dqkv, with masks and dropout",
    async () => {
      const g = flash ??= await WebGpuBackend.create({ attention: "flash" });
      expect(g.attentionSavedLength(2, 7, 3)).toBe(2 * 2 * 3 * 7); // lse and D per row, not T² probabilities
      for (const shape of [...attnShapes, [2, 130, 16, 1] as [number, number, number, number]]) {
        for (const masked of [false, true]) {
          for (const drop of [noDropout, dropout]) {
            const { r, what } = await attentionBoth(g, shape, masked, drop, ["out", "dqkv"]);
            // as the rows kernels, plus exp(x − lse) for P instead of e/Σe (a few ULP more)
            close(r, "out", { atol: 2e-5, rtol: 1e-5 }, what);
            close(r, "dqkv", { atol: 5e-5, rtol: 2e-4 }, what);
          }
        }
      }
      expect(() => {
        const x = g.alloc(3 * 2 * 130 * 3 * 260);
        g.attentionForward({ out: x, att: x, qkv: x, B: 1, T: 2, C: 260, NH: 2 });
      }).toThrow(/head size 130 exceeds 128/);
    },
  );

  gpuTest(
    'attention "matmul" (batched Q·Kᵀ and P·V around a softmax): the CPU\'s att, out and dqkv, with masks and dropout',
    async () => {
      const g = await gpu(); // the default attention
      expect(g.attentionKernel).toBe("matmul");
      expect(g.attentionSavedLength(2, 7, 3)).toBe(2 * 3 * 7 * 7); // the probabilities, as "rows"
      // beyond attnShapes: T across several 64-row blocks with heads of 8 (blocks on and off the diagonal,
      // skipped and partial), and HS = 64 (GPT-2's) over two batch rows
      const shapes: [number, number, number, number][] = [...attnShapes, [2, 130, 16, 2], [2, 67, 128, 2]];
      for (const shape of shapes) {
        for (const masked of [false, true]) {
          for (const drop of [noDropout, dropout]) {
            const { r, what } = await attentionBoth(g, shape, masked, drop, ["out", "att", "dqkv"]);
            // the rows kernels' tolerances: the same sums (k in order), other reduction trees
            close(r, "att", { atol: 2e-6, rtol: 1e-5 }, what);
            close(r, "out", { atol: 1e-5, rtol: 1e-5 }, what);
            close(r, "dqkv", { atol: 2e-5, rtol: 1e-4 }, what);
          }
        }
      }
      expect(() => parseAttentionKernel("matmull")).toThrow(/expected one of matmul, rows, flash/);
    },
  );

  gpuTest("the default attention whose T×T probabilities exceed a binding runs the flash kernels", async () => {
    const g = await gpu(); // attention "matmul" ("rows" falls back the same way)
    expect(g.attentionSavedLength(2, 7, 3)).toBe(2 * 3 * 7 * 7);
    // the smallest T whose probabilities (B = NH = 1) pass the device's largest binding (lavapipe: 128 MiB → 5793)
    const T = Math.floor(Math.sqrt(g.maxBindingBytes / 4)) + 1, C = 16, NH = 1;
    expect(g.attentionSavedLength(1, T, NH)).toBe(2 * T);
    if (T > 6000) return; // a GPU with a larger binding: the shape would be too slow for the CPU reference
    const qkv = randn(T * 3 * C, 5, -2, 2), dout = randn(T * C, 6);
    const run = async (be: Backend, savedLength: number) => {
      const up = (a: Float32Array) => be.upload(a);
      const [q, d] = [up(qkv), up(dout)];
      const out = be.alloc(T * C), att = be.alloc(savedLength), dqkv = be.alloc(T * 3 * C);
      be.attentionForward({ out, att, qkv: q, B: 1, T, C, NH });
      be.attentionBackward({ dqkv, dout: d, qkv: q, att, B: 1, T, C, NH });
      const res = { out: (await be.read(out)) as Float32Array, dqkv: (await be.read(dqkv)) as Float32Array };
      for (const b of [q, d, out, att, dqkv]) be.free(b);
      return res;
    };
    const want = await run(new CpuBackend(), T * T), got = await run(g, 2 * T);
    assertClose(got.out, want.out, { atol: 2e-5, rtol: 1e-5 }, "out");
    assertClose(got.dqkv, want.dqkv, { atol: 5e-5, rtol: 2e-4 }, "dqkv");
  });

  gpuTest("attentionCached: prefill then token by token, with a mask, against the CPU", async () => {
    const g = await gpu();
    const [B, Tmax, C, NH] = [2, 6, 10, 2];
    const HS = C / NH;
    const mask = new Int32Array(B * Tmax).fill(1);
    mask[0] = 0; // batch 0, position 0 is padding: the first query sees nothing
    mask[Tmax + 2] = 0;
    const steps: [number, number][] = [[0, 3], [3, 1], [4, 1], [5, 1]]; // (pos0, Tn)
    const state: Record<string, { kc: Buf; vc: Buf; mask: Buf }> = {};
    for (const [name, be] of [["cpu", cpu], ["gpu", g]] as const) {
      state[name] = {
        kc: be.alloc(B * NH * Tmax * HS, "f32", "kcache"),
        vc: be.alloc(B * NH * Tmax * HS, "f32", "vcache"),
        mask: be.upload(mask, "mask"),
      };
    }
    let seed = 100;
    for (const [pos0, Tn] of steps) {
      const qkv = randn(B * Tn * 3 * C, seed++, -2, 2);
      const res: Record<string, Data[]> = {};
      for (const [name, be] of [["cpu", cpu], ["gpu", g]] as const) {
        const s = state[name]!;
        const q = be.upload(qkv, "qkv");
        const out = be.alloc(B * Tn * C, "f32", "out");
        be.attentionCached({ out, qkv: q, kcache: s.kc, vcache: s.vc, mask: s.mask, B, Tn, pos0, Tmax, C, NH });
        res[name] = [await be.read(out), await be.read(s.kc), await be.read(s.vc)];
        be.free(q), be.free(out);
      }
      const what = `pos0 ${pos0} Tn ${Tn}`;
      assertClose(res.gpu![0]!, res.cpu![0]!, { atol: 1e-5, rtol: 1e-5 }, `${what} out`); // as attention forward
      assertClose(res.gpu![1]!, res.cpu![1]!, { atol: 0 }, `${what} kcache`); // copies: exact
      assertClose(res.gpu![2]!, res.cpu![2]!, { atol: 0 }, `${what} vcache`);
    }
  });

  // --------------------------------------------------------------------------------------------- loss
  gpuTest("crossEntropy: ignored rows, V not a multiple of 256, separate / in place / no dlogits", async () => {
    const g = await gpu();
    const [N, V] = [5, 300];
    const targets = new Int32Array([3, -100, 299, 0, -100]);
    const inputs = { logits: randn(N * V, 11, -8, 8), targets, losses: randn(N, 1), dlogits: randn(N * V, 2) };
    const scale = 1 / 3;
    // log-sum-exp over 300 terms (tree vs sequential) and exp with a few ULP: 1e-5 relative on losses ~6.
    const tolLoss = { atol: 1e-5, rtol: 1e-5 };
    const tolGrad = { atol: 1e-7, rtol: 1e-4 }; // probabilities down to e⁻¹⁶: relative matters
    const r1 = await both(g, inputs, (be, x) =>
      be.crossEntropy({
        losses: x.losses!,
        dlogits: x.dlogits,
        logits: x.logits!,
        targets: x.targets!,
        N,
        V,
        scale,
      }), ["losses", "dlogits", "logits"]);
    close(r1, "losses", tolLoss, "separate");
    close(r1, "dlogits", tolGrad, "separate");
    close(r1, "logits", { atol: 0 }, "separate (unchanged)");
    const r2 = await both(g, inputs, (be, x) =>
      be.crossEntropy({
        losses: x.losses!,
        dlogits: x.logits,
        logits: x.logits!,
        targets: x.targets!,
        N,
        V,
        scale,
      }), ["losses", "logits"]);
    close(r2, "losses", tolLoss, "in place");
    close(r2, "logits", tolGrad, "in place");
    const r3 = await both(
      g,
      inputs,
      (be, x) => be.crossEntropy({ losses: x.losses!, logits: x.logits!, targets: x.targets!, N, V, scale }),
      ["losses"],
    );
    close(r3, "losses", tolLoss, "loss only");
  });

  gpuTest("sum: n = 1 and n = 1003, scale, accumulate", async () => {
    const g = await gpu();
    for (const n of [1, 1003]) {
      for (const accumulate of [false, true]) {
        const r = await both(
          g,
          { inp: randn(n, n), out: new Float32Array([0.5]) },
          (be, x) => be.sum({ out: x.out!, inp: x.inp!, n, s: 0.25, accumulate }),
          ["out"],
        );
        close(r, "out", { atol: 1e-6 * Math.sqrt(n), rtol: 1e-6 }); // tree vs float64 sum of n terms
      }
    }
  });

  // --------------------------------------------------------------------------------------------- optimizer
  gpuTest("globalNorm over buffers of 1, 300 and 9000 elements (several 4096 blocks)", async () => {
    const g = await gpu();
    const inputs = { a: randn(1, 1), b: randn(300, 2), c: randn(9000, 3, -3, 3), out: new Float32Array(1) };
    const r = await both(g, inputs, (be, x) => be.globalNorm({ out: x.out!, bufs: [x.a!, x.b!, x.c!] }), ["out"]);
    close(r, "out", { atol: 0, rtol: 1e-5 }); // float32 tree sums of ~10⁴ squares vs float64
  });

  gpuTest("adamw with and without clipping", async () => {
    const g = await gpu();
    const n = 1003;
    const inputs = {
      param: randn(n, 1),
      grad: randn(n, 2),
      m: randn(n, 3, -0.1, 0.1),
      v: randn(n, 4, 0, 0.01),
      norm: new Float32Array([3.7]),
    };
    for (const clip of [false, true]) {
      const r = await both(g, inputs, (be, x) =>
        be.adamw({
          param: x.param!,
          grad: x.grad!,
          m: x.m!,
          v: x.v!,
          n,
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0.01,
          step: 3,
          norm: clip ? x.norm : undefined,
          maxNorm: clip ? 1 : undefined,
        }), ["param", "m", "v"]);
      // A few float32 roundings of values ~1 (param), ~0.1 (m), ~0.01 (v); bias corrections in float32.
      close(r, "param", { atol: 1e-6, rtol: 1e-6 }, `clip ${clip}`);
      close(r, "m", { atol: 1e-7, rtol: 1e-6 }, `clip ${clip}`);
      close(r, "v", { atol: 1e-8, rtol: 1e-6 }, `clip ${clip}`);
    }
  });

  // --------------------------------------------------------------------------------------------- big grids
  gpuTest("more than 65535 workgroups: row kernels and elementwise kernels use 2D grids", async () => {
    const g = await gpu();
    // layernorm and cross-entropy launch one workgroup per row: 70 000 rows need a 2D grid.
    const N = 70_000;
    const inputs = {
      inp: randn(N * 3, 1),
      weight: randn(3, 2),
      bias: randn(3, 3),
      out: new Float32Array(N * 3),
      targets: new Int32Array(N).map((_, i) => (i % 5 === 0 ? -100 : i % 3)),
      losses: new Float32Array(N),
    };
    const r = await both(g, inputs, (be, x) => {
      be.layernormForward({ out: x.out!, inp: x.inp!, weight: x.weight!, bias: x.bias!, N, C: 3, eps: 1e-5 });
      be.crossEntropy({ losses: x.losses!, logits: x.inp!, targets: x.targets!, N, V: 3, scale: 1 });
    }, ["out", "losses"]);
    close(r, "out", { atol: 1e-4, rtol: 1e-4 }); // C = 3 with eps 1e-5: rstd can be large
    close(r, "losses", { atol: 1e-5, rtol: 1e-5 });
    // scale launches n / 256 workgroups: 65536·256 + 5 elements is just over the 1D limit.
    const n = 65536 * 256 + 5;
    const x = g.alloc(n, "f32", "big");
    g.write(x, new Float32Array([1, 2]), 0);
    g.write(x, new Float32Array([3, 4]), n - 2);
    g.scale({ buf: x, n, s: 2 });
    const back = await g.read(x);
    expect([back[0], back[1], back[n - 2], back[n - 1]]).toEqual([2, 4, 6, 8]);
    g.free(x);
  });

  gpuTest("the submit ramp: after each wait, batches of 16, 32, 64 … up to flushEvery; the same results", async () => {
    const [ramp, flat] = [await WebGpuBackend.create(), await WebGpuBackend.create({ flushRamp: false })];
    const x = new Float32Array(8).fill(1);
    try {
      expect(flat.description).toContain("no submit ramp");
      expect(ramp.description).not.toContain("ramp");
      const run = async (g: WebGpuBackend, flushed: number[]) => {
        const out = g.upload(x);
        await g.sync(); // the upload's own submit, then a wait: the ramp starts over
        for (const expected of flushed) {
          const before = g.stats.submits;
          for (let i = 0; i < 100; i++) g.scale({ buf: out, n: 8, s: 1.001 });
          expect(g.stats.submits - before).toBe(expected);
        }
        const got = Array.from(await g.read(out));
        const before = g.stats.submits;
        for (let i = 0; i < 17; i++) g.scale({ buf: out, n: 8, s: 1 });
        expect(g.stats.submits - before).toBe(g.flushRamp ? 1 : 0); // the read waited: 16 again
        return got;
      };
      // ramp: submits after the 16th and 48th dispatch (16 + 32), the 112th (+ 64), the 240th (+ 128), then
      // every 256; flat: after the 256th only
      const a = await run(ramp, [2, 1, 1]), b = await run(flat, [0, 0, 1]);
      expect(a).toEqual(b);
      expect(a[0]).toBeCloseTo(1.001 ** 300, 4);
    } finally {
      ramp.dispose();
      flat.dispose();
    }
    // the batching is a backend option (bench's --no-flush-ramp), not an environment variable
    const g = await WebGpuBackend.create({ flushRamp: false });
    expect(g.flushRamp).toBe(false);
    expect(g.description).toContain("no submit ramp");
    g.dispose();
  });

  gpuTest("flushEvery (bench's --flush-every): the recorded work is submitted every N dispatches", async () => {
    const g = await WebGpuBackend.create({ flushEvery: 4, flushRamp: false });
    try {
      expect(g.flushEvery).toBe(4);
      expect(g.description).toContain("submits every 4 dispatches");
      const a = g.upload(new Float32Array(8).fill(1)), out = g.alloc(8);
      const before = g.stats.submits;
      for (let i = 0; i < 10; i++) g.add({ out, a, b: a, n: 8 });
      expect(g.stats.submits - before).toBe(2); // after the 4th and the 8th dispatch
      expect(Array.from(await g.read(out))).toEqual(new Array(8).fill(2)); // the read submits the last two
      expect(g.stats.submits - before).toBe(3);
    } finally {
      g.dispose();
    }
    expect((await gpu()).flushEvery).toBe(256);
    expect((await gpu()).flushRamp).toBe(true);
    for (const bad of ["0", "257", "4.5", "many", ""]) {
      expect(() => parseFlushEvery(bad, "--flush-every")).toThrow(
        /Invalid --flush-every ".*": expected a whole number of dispatches from 1 to 256/,
      );
    }
  });

  gpuTest("bind groups are reused across dispatches while each dispatch keeps its own uniforms", async () => {
    const g = await gpu();
    const x = g.upload(new Float32Array([1, 2, 3]), "x");
    const before = g.stats;
    // one batch, the same buffer (so the same bind group) with different scales and lengths
    g.scale({ buf: x, n: 3, s: 2 });
    g.scale({ buf: x, n: 2, s: 10 });
    g.scale({ buf: x, n: 1, s: -1 });
    expect(Array.from(await g.read(x))).toEqual([-20, 40, 6]);
    // a freed buffer handed out again by the pool, with another length, in the same kernel
    g.free(x);
    const y = g.upload(new Float32Array([5, 6]), "y");
    g.scale({ buf: y, n: 2, s: 3 });
    expect(Array.from(await g.read(y))).toEqual([15, 18]);
    const after = g.stats;
    expect(after.dispatches - before.dispatches).toBe(4);
    expect(after.submits).toBeGreaterThan(before.submits);
    g.free(y);
  });

  gpuTest("tiled (the default) and auto split K where a product has few blocks and a long K, else not", async () => {
    expect(splitKSlices(32, 768, 21191)).toBe(22); // the LM head's backward dx at B=4 (12 blocks)
    expect(splitKSlices(5, 7, 3000)).toBe(6);
    expect(splitKSlices(70, 130, 2049)).toBe(5); // ⌈2049/512⌉ = 5 slices of 416
    expect(splitKSlices(1024, 768, 3072)).toBe(1); // 192 blocks: enough work already
    expect(splitKSlices(8, 8, 1023)).toBe(1); // short K
    for (const matmul of ["tiled", "auto"] as const) {
      const g = await WebGpuBackend.create({ matmul, profile: true });
      try {
        const a = g.upload(randn(5 * 3000, 1), "a"), b = g.upload(randn(3000 * 7, 2), "b");
        const out = g.alloc(35, "f32", "out");
        g.matmul({ out, a, b, M: 5, N: 7, K: 3000 });
        g.matmul({ out, a, b: a, M: 5, N: 5, K: 100, transB: true });
        const kernels = (await g.profile()).map((r) => r.kernel).sort();
        expect(kernels).toEqual([
          "matmul_tiled.wgsl:main 5×5×100 Bᵀ",
          "matmul_tiled.wgsl:main 5×7×3000 split 6",
          "split_k_reduce.wgsl:main",
        ]);
        for (const x of [a, b, out]) g.free(x);
      } finally {
        g.dispose();
      }
    }
  });

  gpuTest(
    "split-K over the large and the tiled kernel, forced: edge blocks, a partial last slice, bias, +=",
    async () => {
      const candidates = [
        { name: "large split 3", kernel: "large", slices: 3 },
        { name: "tiled split 5", kernel: "tiled", slices: 5 },
      ] as const;
      for (const c of candidates) {
        const g = await WebGpuBackend.create({ matmulCandidate: c });
        try {
          let seed = 100;
          // 130 × 260: edge blocks of 128 and 64; K = 1000 cuts into slices of 336/208 with a shorter last one
          for (const [M, N, K] of [[130, 260, 1000], [7, 9, 50]] as const) {
            const flags = [[false, false, true, false], [true, true, false, true]] as const;
            for (const [transA, transB, bias, accumulate] of flags) {
              const args = { M, N, K, transA, transB, bias, accumulate };
              await checkMatmul(
                g,
                args,
                seed,
                { atol: 2e-6 * K, rtol: 1e-5 },
                `${c.name} M${M} N${N} K${K} tA${+transA}`,
              );
              seed += 4;
            }
          }
        } finally {
          g.dispose();
        }
      }
    },
  );

  gpuTest("tune: every candidate timed once per shape, the fastest chosen, the same results", async () => {
    expect(matmulCandidates(1024, 3072, 768, 1).map((c) => c.name)).toEqual(["tiled", "large"]);
    expect(matmulCandidates(64, 64, 100, 1).map((c) => c.name)).toEqual(["tiled"]); // one 128-block: large idles
    // keys: the token dimension (M; K for the weight gradient Aᵀ·B) in power-of-two buckets, the weight's exact
    expect(tuneKey(1000, 3072, 768, false, true)).toBe("M≤1024×3072×768 Bᵀ");
    expect(tuneKey(520, 3072, 768, false, false)).toBe("M≤1024×3072×768");
    expect(tuneKey(768, 3072, 2096, true, false)).toBe("768×3072×K≤4096 Aᵀ");
    expect(tuneKey(768, 3072, 1100, true, false)).toBe(tuneKey(768, 3072, 2048, true, false));
    expect(tuneKey(1, 768, 21191, false, false)).toBe("M≤64×768×21191");
    expect(matmulCandidates(32, 768, 21191, 22).map((c) => c.name)).toEqual([
      "tiled",
      "large",
      "large split 43",
      "tiled split 22",
      "tiled split 44",
    ]);
    const g = await WebGpuBackend.create({ matmul: "tune" });
    try {
      expect(g.description).toContain("matmul tune");
      const [M, N, K] = [300, 520, 700]; // K < 1024: no split-K candidates
      const inputs = { a: randn(M * K, 1), b: randn(K * N, 2), out: new Float32Array(M * N) };
      const first = await both(g, inputs, (be, x) => be.matmul({ out: x.out!, a: x.a!, b: x.b!, M, N, K }), ["out"]);
      close(first, "out", { atol: 2e-6 * K, rtol: 1e-5 });
      const tuned = g.matmulTuning!;
      expect(tuned.map((t) => t.shape)).toEqual(["M≤512×520×700"]);
      const t = tuned[0]!;
      expect(t.candidates.map((c) => c.name)).toEqual(["tiled", "large", "large split 2"]);
      expect(t.candidates.every((c) => c.ms > 0)).toBe(true);
      const fastest = t.candidates.reduce((x, y) => (y.ms < x.ms ? y : x));
      expect(t.choice).toBe(fastest.name);
      // the same shape again (M rounds to the same key) runs the choice and tunes nothing new
      const before = g.stats.dispatches;
      const again = await both(g, inputs, (be, x) => be.matmul({ out: x.out!, a: x.a!, b: x.b!, M, N, K }), ["out"]);
      close(again, "out", { atol: 2e-6 * K, rtol: 1e-5 });
      expect(g.stats.dispatches - before).toBe(t.choice!.includes("split") ? 2 : 1); // split: product + reduce
      expect(g.matmulTuning!.length).toBe(1);
      expect(formatTuning(g.matmulTuning!)).toContain(`*${t.choice}`);
    } finally {
      g.dispose();
    }
  });

  gpuTest("profile: GPU time per kernel from timestamp queries, matmuls keyed by shape", async () => {
    const plain = await gpu();
    expect(plain.profiling).toBe(false);
    await expect(plain.profile()).rejects.toThrow(/without `profile`/);
    const g = await WebGpuBackend.create({ profile: true });
    try {
      expect(g.profiling).toBe(true);
      const a = g.upload(randn(64 * 32, 1), "a"), b = g.upload(randn(32 * 48, 2), "b");
      const out = g.alloc(64 * 48, "f32", "out");
      for (let i = 0; i < 3; i++) g.matmul({ out, a, b, M: 64, N: 48, K: 32 });
      g.matmul({ out, a: b, b: a, M: 48, N: 64, K: 32, transA: true, transB: true, accumulate: true });
      const act = g.alloc(64 * 48, "f32", "act");
      g.geluForward({ out: act, inp: out, n: 10 });
      const rows = await g.profile();
      const byKernel = new Map(rows.map((r) => [r.kernel, r]));
      expect(byKernel.get("matmul_tiled.wgsl:main 64×48×32")?.calls).toBe(3);
      expect(byKernel.get("matmul_tiled.wgsl:main 48×64×32 Aᵀ Bᵀ +=")?.calls).toBe(1);
      expect(byKernel.get("gelu_forward.wgsl:main")?.calls).toBe(1);
      expect(rows.every((r) => r.ms >= 0)).toBe(true);
      expect(rows.reduce((s, r) => s + r.ms, 0)).toBeGreaterThan(0);
      // sorted, largest first
      for (let i = 1; i < rows.length; i++) expect(rows[i - 1]!.ms).toBeGreaterThanOrEqual(rows[i]!.ms);
      // more dispatches than one batch holds: every one is still counted
      await g.profile({ reset: true });
      for (let i = 0; i < 300; i++) g.scale({ buf: out, n: 4, s: 1 });
      const again = await g.profile();
      expect(again.map((r) => [r.kernel, r.calls])).toEqual([["scale.wgsl:main", 300]]);
      // full-precision timestamps on both runtimes (Dawn rounds them down to 2¹⁶ ns unless told not to:
      // gpu_device.ts): single dispatches, timed one by one, are not all multiples of 65536 ns
      const ns: number[] = [];
      for (let i = 0; i < 6; i++) {
        g.scale({ buf: out, n: 4, s: 1 });
        ns.push(Math.round((await g.profile({ reset: true }))[0]!.ms * 1e6));
      }
      expect(ns.some((x) => x % 65536 !== 0)).toBe(true);
      // profiling does not change results
      const ref = await g.read(out);
      expect(Number.isFinite(ref[0]!)).toBe(true);
      expect(formatProfile(again)).toMatch(/scale\.wgsl:main\s+300/);
      for (const x of [a, b, out, act]) g.free(x);
    } finally {
      g.dispose();
    }
  });

  gpuTest("release devices", async () => {
    for (const be of backends.values()) be.dispose();
    flash?.dispose();
    rowsAttention?.dispose();
    backends.clear();
    await Promise.resolve();
  });
});
