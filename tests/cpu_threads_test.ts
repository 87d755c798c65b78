/**
 * The CPU backend's helper threads (src/backend/cpu/threads.ts, worker.ts, parallel.ts): every op
 * they split gives the same numbers as one thread — bit for bit where each element's arithmetic is the
 * same whoever computes it (attention per head, GELU, dropout, AdamW, layernorm's outputs, the WASM
 * matmul's blocks of rows or columns), and to float32 rounding for layernorm's weight and bias gradients
 * (the parts' sums are added after) and for attention whose products OpenBLAS threads in one run and not in
 * the other. Sizes are above the split thresholds (65536 elements of work, 2²⁰ multiply-adds for a product),
 * with lengths that do not divide evenly; 3 threads on any machine.
 */

import { describe, expect, test } from "bun:test";
import { CpuBackend, cpuData } from "../src/backend/cpu.ts";
import { cpuThreadCount, splitRange } from "../src/backend/cpu/threads.ts";
import { loadBlas } from "../src/backend/cpu/matmul.ts";
import { backendSettings } from "../src/env.ts";
import type { Buf } from "../src/backend/backend.ts";
import { uniformRng as rng } from "../src/model/rng.ts";

function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

const one = new CpuBackend({ threads: 1 }), three = new CpuBackend({ threads: 3 });
const blas = "blas" in loadBlas();
/** The WebAssembly matmul (what runs where no BLAS loads): the products are split over the threads too. */
const oneW = new CpuBackend({ threads: 1, matmul: "wasm" }), threeW = new CpuBackend({ threads: 3, matmul: "wasm" });

function same(what: string, a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) throw new Error(`${what} [${i}]: ${a[i]} with 3 threads, ${b[i]} with 1`);
  }
}

/**
 * Run `f` on a 3-thread and a 1-thread backend (`pair`: BLAS where it loads, or the WASM matmul) and
 * return each's outputs as arrays; `splits` ops must have been split.
 */
function both(
  f: (be: CpuBackend) => Buf[],
  splits: number,
  [many, single] = [three, one],
): [Float32Array[], Float32Array[]] {
  const get = (be: CpuBackend) => f(be).map((b) => (cpuData(b) as Float32Array).slice());
  const before = many.splitOps;
  const r: [Float32Array[], Float32Array[]] = [get(many), get(single)];
  expect(many.splitOps - before).toBe(splits);
  expect(single.splitOps).toBe(0);
  return r;
}

/** Equal to float32 rounding: |a − b| ≤ 1e−5·max(1, |b|) (a wrong head or block is off by ≥ 1e−2 here). */
function close(what: string, a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i]! - b[i]!) <= 1e-5 * Math.max(1, Math.abs(b[i]!)))) {
      throw new Error(`${what} [${i}]: ${a[i]} with 3 threads, ${b[i]} with 1`);
    }
  }
}

describe("CPU helper threads", () => {
  test("the backend says how many threads", () => {
    expect(three.description).toContain("3 threads");
    expect(one.description).not.toContain("threads)");
    expect(cpuThreadCount()).toBeGreaterThanOrEqual(1);
  });

  test("GPT2_SFT_CPU_THREADS: a number ≥ 1 is taken, anything else is an error that names the variable", () => {
    // src/env.ts reads it into the backend's `threads` option
    const threads = (v: string) => backendSettings({ GPT2_SFT_CPU_THREADS: v }).cpu?.threads;
    expect(threads("3")).toBe(3);
    expect(threads("100")).toBe(64);
    expect(threads("")).toBeUndefined();
    for (const bad of ["0", "two", "1.5"]) expect(() => threads(bad)).toThrow("GPT2_SFT_CPU_THREADS");
  });

  test("splitRange: covers [0, n) in order, starts aligned, at most `parts` ranges", () => {
    for (const [n, parts, align] of [[1, 3, 16], [100, 3, 16], [65537, 4, 16], [7, 7, 1], [5, 2, 1]] as const) {
      const r = splitRange(n, parts, align);
      expect(r.length).toBeLessThanOrEqual(parts);
      expect(r[0]![0]).toBe(0);
      expect(r.at(-1)![1]).toBe(n);
      for (let k = 1; k < r.length; k++) {
        expect(r[k]![0]).toBe(r[k - 1]![1]);
        expect(r[k]![0] % align).toBe(0);
      }
    }
  });

  test("GELU forward and backward (=, +=), dropout forward and backward: bit for bit", () => {
    const n = 200_003;
    const x = rand(n, 1), dy = rand(n, 2), old = rand(n, 3);
    const [a, b] = both((be) => {
      const out = be.alloc(n), dinp = be.upload(old), acc = be.upload(old), drop = be.alloc(n), dd = be.upload(old);
      be.geluForward({ out, inp: be.upload(x), n });
      be.geluBackward({ dinp, inp: be.upload(x), dout: be.upload(dy), n });
      be.geluBackward({ dinp: acc, inp: be.upload(x), dout: be.upload(dy), n, accumulate: true });
      be.dropoutForward({ out: drop, inp: be.upload(x), n, p: 0.1, seed: 5 });
      be.dropoutBackward({ dinp: dd, dout: be.upload(dy), n, p: 0.1, seed: 5, accumulate: true });
      const id = be.alloc(n);
      be.dropoutForward({ out: id, inp: be.upload(x), n, p: 0, seed: 5 }); // p = 0: the identity
      const out2 = be.alloc(n), deriv = be.alloc(n), acc2 = be.upload(old);
      be.geluForward({ out: out2, inp: be.upload(x), n, deriv }); // with the saved derivative
      be.geluBackward({ dinp: acc2, inp: be.upload(x), dout: be.upload(dy), n, accumulate: true, deriv });
      return [out, dinp, acc, drop, dd, id, out2, deriv, acc2];
    }, 8);
    same("gelu with deriv", a[6]!, b[6]!);
    same("gelu deriv", a[7]!, b[7]!);
    same("gelu dinp += from deriv", a[8]!, b[8]!);
    same("dropout p = 0", a[5]!, x);
    for (const [k, name] of ["gelu", "gelu dinp", "gelu dinp +=", "dropout", "dropout dinp +="].entries()) {
      same(name, a[k]!, b[k]!);
    }
  });

  test("layernorm forward (bit for bit) and backward (dinp bit for bit, dweight/dbias to rounding)", () => {
    const N = 1001, C = 96;
    const x = rand(N * C, 4), w = rand(C, 5), bias = rand(C, 6), dy = rand(N * C, 7), dw0 = rand(C, 8);
    const [a, b] = both((be) => {
      const out = be.alloc(N * C), mean = be.alloc(N), rstd = be.alloc(N);
      const inp = be.upload(x), weight = be.upload(w);
      be.layernormForward({ out, mean, rstd, inp, weight, bias: be.upload(bias), N, C, eps: 1e-5 });
      const dinp = be.alloc(N * C), dweight = be.upload(dw0), dbias = be.upload(dw0);
      be.layernormBackward({ dinp, dweight, dbias, dout: be.upload(dy), inp, weight, mean, rstd, N, C });
      return [out, mean, rstd, dinp, dweight, dbias];
    }, 2);
    for (const [k, name] of ["out", "mean", "rstd", "dinp"].entries()) same(name, a[k]!, b[k]!);
    for (const k of [4, 5]) {
      for (let c = 0; c < C; c++) expect(Math.abs(a[k]![c]! - b[k]![c]!)).toBeLessThan(1e-4);
    }
  });

  test("AdamW on 300 001 parameters: bit for bit", () => {
    const n = 300_001;
    const [a, b] = both((be) => {
      const param = be.upload(rand(n, 9)), grad = be.upload(rand(n, 10)), m = be.alloc(n), v = be.alloc(n);
      for (let step = 1; step <= 2; step++) {
        be.adamw({ param, grad, m, v, n, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step });
      }
      return [param, m, v];
    }, 2);
    for (const [k, name] of ["param", "m", "v"].entries()) same(name, a[k]!, b[k]!);
  });

  test.skipIf(!blas)(
    "heads too big for OpenBLAS to keep on one thread: split with BLAS held to one, then restored",
    () => {
      // 64 × 160 × 80 > 4·65536: OpenBLAS would thread these products itself; B·NH·T² above the split threshold
      const lib = loadBlas();
      const now = () => ("blas" in lib ? lib.blas.currentThreads?.() : undefined);
      const before = now();
      const splits = "blas" in lib && lib.blas.setThreads && lib.blas.threads > 1 ? 2 : 0;
      // one OpenBLAS thread per product against two: the same sums, but OpenBLAS's kernels for some
      // processors (Zen, measured) round differently when threaded, so to float32 rounding, not bit for bit
      bigHeads([three, one], splits, close);
      expect(now()).toBe(before); // OpenBLAS's own threads are back
    },
  );

  test("heads too big for OpenBLAS, with the WASM matmul (it never threads a product): bit for bit", () => {
    bigHeads([threeW, oneW], 2, same);
  });

  for (
    const [name, pair] of [["BLAS", [three, one]], ["WASM", [threeW, oneW]]] as [string, [CpuBackend, CpuBackend]][]
  ) {
    test.skipIf(name === "BLAS" && !blas)(
      `${name}: attention forward and backward, padding and dropout: bit for bit`,
      () => {
        const B = 3, T = 97, NH = 4, HS = 8, C = NH * HS;
        const qkv = rand(B * T * 3 * C, 11), dy = rand(B * T * C, 12);
        const mask = new Int32Array(B * T).fill(1);
        for (let t = 60; t < T; t++) mask[T + t] = 0; // row 1 right-padded
        mask[2 * T + 3] = 0; // row 2: a hole (the general path)
        for (const dropout of [undefined, { p: 0.1, seed: 3 }]) {
          const [a, b] = both(
            (be) => {
              const out = be.alloc(B * T * C), att = be.alloc(B * NH * T * T), dqkv = be.alloc(B * T * 3 * C);
              const q = be.upload(qkv), m = be.upload(mask);
              be.attentionForward({ out, att, qkv: q, mask: m, B, T, C, NH, dropout });
              be.attentionBackward({ dqkv, dout: be.upload(dy), qkv: q, att, mask: m, B, T, C, NH, dropout });
              return [out, att, dqkv];
            },
            2,
            pair,
          );
          for (const [k, name] of ["out", "att", "dqkv"].entries()) same(`${name} p=${dropout?.p ?? 0}`, a[k]!, b[k]!);
        }
      },
    );
  }
});

/** Attention at GPT-2-like head sizes (64 × 160 × 80 products), forward and backward, on `pair`. */
function bigHeads(pair: [CpuBackend, CpuBackend], splits: number, cmp: typeof same): void {
  const B = 2, T = 160, NH = 2, HS = 80, C = NH * HS;
  const qkv = rand(B * T * 3 * C, 13), dy = rand(B * T * C, 14);
  const [a, b] = both(
    (be) => {
      const out = be.alloc(B * T * C), att = be.alloc(B * NH * T * T), dqkv = be.alloc(B * T * 3 * C);
      const q = be.upload(qkv);
      be.attentionForward({ out, att, qkv: q, B, T, C, NH });
      be.attentionBackward({ dqkv, dout: be.upload(dy), qkv: q, att, B, T, C, NH });
      return [out, att, dqkv];
    },
    splits,
    pair,
  );
  for (const [k, name] of ["out", "att", "dqkv"].entries()) cmp(name, a[k]!, b[k]!);
}

describe("the WASM matmul split over helper threads (no BLAS: the products are the threads' work too)", () => {
  test("threads by default from 2 cores with it (4 beside a BLAS that threads itself)", () => {
    const cores = navigator.hardwareConcurrency;
    expect(cpuThreadCount(false)).toBe(cores >= 2 ? Math.min(cores, 16) : 1);
    expect(cpuThreadCount(true)).toBe(cores >= 4 ? Math.min(cores, 16) : 1);
    expect(threeW.description).toContain("3 threads");
    expect(oneW.description).toContain("1 thread)");
  });

  // [M, N, K]: columns split (N ≥ M, panels of 8, N not a multiple), rows split (M > N, blocks of 4, M odd)
  for (const [M, N, K] of [[33, 1001, 70], [517, 61, 67]] as const) {
    test(`M=${M} N=${N} K=${K}: all transA × transB × bias × accumulate, bit for bit`, () => {
      const old = rand(M * N, 5), bias = rand(N, 6);
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = rand(M * K, 7), b = rand(K * N, 8);
          const [x, y] = both(
            (be) => {
              const outs: Buf[] = [];
              for (const withBias of [false, true]) {
                for (const accumulate of [false, true]) {
                  const out = be.upload(old);
                  const args = { out, a: be.upload(a), b: be.upload(b), M, N, K, transA, transB, accumulate };
                  be.matmul({ ...args, bias: withBias ? be.upload(bias) : undefined });
                  outs.push(out);
                }
              }
              return outs;
            },
            4,
            [threeW, oneW],
          );
          for (let k = 0; k < 4; k++) same(`transA=${transA} transB=${transB} case ${k}`, x[k]!, y[k]!);
        }
      }
    });
  }

  test("a product under 2²⁰ multiply-adds stays on one thread", () => {
    const [M, N, K] = [64, 64, 64];
    both(
      (be) => {
        const out = be.alloc(M * N);
        be.matmul({ out, a: be.upload(rand(M * K, 1)), b: be.upload(rand(K * N, 2)), M, N, K });
        return [out];
      },
      0,
      [threeW, oneW],
    );
  });
});
