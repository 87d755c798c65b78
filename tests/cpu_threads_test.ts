/**
 * The CPU backend's helper threads (src/backend/cpu_threads.ts, cpu_worker.ts, cpu_parallel.ts): every op
 * they split gives the same numbers as one thread — bit for bit where each element's arithmetic is the
 * same whoever computes it (attention per head, GELU, dropout, AdamW, layernorm's outputs), and to float32
 * rounding for layernorm's weight and bias gradients (the parts' sums are added after). Sizes are above the
 * split threshold (65536 elements of work), with lengths that do not divide evenly; 3 threads on any machine.
 */

import { describe, expect, test } from "bun:test";
import process from "node:process";
import { CpuBackend, cpuData } from "../src/backend/cpu.ts";
import { cpuThreadCount, splitRange } from "../src/backend/cpu_threads.ts";
import { loadBlas } from "../src/backend/cpu_fast.ts";
import type { Buf } from "../src/backend/backend.ts";
import { uniformRng as rng } from "../src/model/rng.ts";

function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

const one = new CpuBackend({ threads: 1 }), three = new CpuBackend({ threads: 3 });
const blas = "blas" in loadBlas();

function same(what: string, a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) throw new Error(`${what} [${i}]: ${a[i]} with 3 threads, ${b[i]} with 1`);
  }
}

/** Run `f` on both backends and return each's outputs as arrays; `splits` ops must have been split. */
function both(f: (be: CpuBackend) => Buf[], splits: number): [Float32Array[], Float32Array[]] {
  const get = (be: CpuBackend) => f(be).map((b) => (cpuData(b) as Float32Array).slice());
  const before = three.splitOps;
  const r: [Float32Array[], Float32Array[]] = [get(three), get(one)];
  expect(three.splitOps - before).toBe(splits);
  expect(one.splitOps).toBe(0);
  return r;
}

describe("CPU helper threads", () => {
  test("the backend says how many threads", () => {
    expect(three.description).toContain("3 threads");
    expect(one.description).not.toContain("threads)");
    expect(cpuThreadCount()).toBeGreaterThanOrEqual(1);
  });

  test("GPT2_SFT_CPU_THREADS: a number ≥ 1 is taken, anything else is an error that names the variable", () => {
    const old = process.env.GPT2_SFT_CPU_THREADS;
    try {
      process.env.GPT2_SFT_CPU_THREADS = "3";
      expect(cpuThreadCount()).toBe(3);
      for (const bad of ["0", "two", "1.5"]) {
        process.env.GPT2_SFT_CPU_THREADS = bad;
        expect(() => cpuThreadCount()).toThrow("GPT2_SFT_CPU_THREADS");
      }
    } finally {
      if (old === undefined) delete process.env.GPT2_SFT_CPU_THREADS;
      else process.env.GPT2_SFT_CPU_THREADS = old;
    }
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
      const B = 2, T = 160, NH = 2, HS = 80, C = NH * HS;
      const qkv = rand(B * T * 3 * C, 13), dy = rand(B * T * C, 14);
      const lib = loadBlas();
      const now = () => ("blas" in lib ? lib.blas.currentThreads?.() : undefined);
      const before = now();
      const [a, b] = both((be) => {
        const out = be.alloc(B * T * C), att = be.alloc(B * NH * T * T), dqkv = be.alloc(B * T * 3 * C);
        const q = be.upload(qkv);
        be.attentionForward({ out, att, qkv: q, B, T, C, NH });
        be.attentionBackward({ dqkv, dout: be.upload(dy), qkv: q, att, B, T, C, NH });
        return [out, att, dqkv];
      }, "blas" in lib && lib.blas.setThreads && lib.blas.threads > 1 ? 2 : 0);
      for (const [k, name] of ["out", "att", "dqkv"].entries()) same(name, a[k]!, b[k]!);
      expect(now()).toBe(before); // OpenBLAS's own threads are back
    },
  );

  test.skipIf(!blas)("attention forward and backward, with padding and dropout: bit for bit", () => {
    const B = 3, T = 97, NH = 4, HS = 8, C = NH * HS;
    const qkv = rand(B * T * 3 * C, 11), dy = rand(B * T * C, 12);
    const mask = new Int32Array(B * T).fill(1);
    for (let t = 60; t < T; t++) mask[T + t] = 0; // row 1 right-padded
    mask[2 * T + 3] = 0; // row 2: a hole (the general path)
    for (const dropout of [undefined, { p: 0.1, seed: 3 }]) {
      const [a, b] = both((be) => {
        const out = be.alloc(B * T * C), att = be.alloc(B * NH * T * T), dqkv = be.alloc(B * T * 3 * C);
        const q = be.upload(qkv), m = be.upload(mask);
        be.attentionForward({ out, att, qkv: q, mask: m, B, T, C, NH, dropout });
        be.attentionBackward({ dqkv, dout: be.upload(dy), qkv: q, att, mask: m, B, T, C, NH, dropout });
        return [out, att, dqkv];
      }, 2);
      for (const [k, name] of ["out", "att", "dqkv"].entries()) same(`${name} p=${dropout?.p ?? 0}`, a[k]!, b[k]!);
    }
  });
});
