/**
 * Dropout: the counter-based mask (src/backend/dropout_hash.ts), `dropoutForward` / `dropoutBackward`, and
 * the attention dropout of `attentionForward` / `attentionBackward`, on the CPU reference and on WebGPU.
 *
 * CPU checks (a mask has no derivative, so finite differences of dropout itself mean nothing):
 * - the fraction dropped is within 4 σ of p for n = 100 000 (σ = √(n·p·(1−p))), and masks of neighbouring
 *   elements and of neighbouring seeds look independent (pairs dropped together within 4 σ of p²);
 * - kept values are exactly fround(x·fround(1/(1−p))), dropped ones exactly 0; p = 0 is the identity;
 * - the backward applies exactly the forward's mask to dout (both `=` and `+=`), in place too;
 * - attention with dropout: the saved att is the undropped softmax, bit for bit; out and the backward
 *   against a float64 reference (forward) and central finite differences of it (backward) that apply the
 *   same mask, computed here with `dropoutKeep`; p = 0 equals no dropout bit for bit.
 * WebGPU checks, against the CPU at awkward sizes (n not a multiple of 256, T = 1, T above the 64-key
 * chunk, HS = 5 and HS = 130 > 64): the dropout kernels bit for bit (one float32 product per element on both
 * sides), the attention kernels within float32 tolerance; the mask itself must agree exactly, since one
 * differing element would change a value by O(P·v) ≫ the tolerance. Without an adapter the WebGPU tests are
 * skipped with a notice, except under CI (`CI` set), where a missing adapter is a failure.
 */

import { describe, expect, test } from "bun:test";
import type { AttentionDropout, Backend, Buf } from "../src/backend/backend.ts";
import { CpuBackend, cpuData } from "../src/backend/cpu.ts";
import { dropoutHash, dropoutKeep, dropoutParams, lowbias32 } from "../src/backend/dropout_hash.ts";
import { type Data, onBoth, webgpuForTests } from "../src/testing/backends.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { assertClose, maxAbs } from "../src/testing/compare.ts";
import { uniformRng as rng } from "../src/model/rng.ts";
import { attention64, dot, numGrad } from "./helpers/reference64.ts";

// ---------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------

/** n uniform samples in [lo, hi), rounded to float32 (so float32 and float64 code see the same numbers). */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => Math.fround(lo + (hi - lo) * r()));
}

const cpu = new CpuBackend();
const up = (x: ArrayLike<number>): Buf => cpu.upload(Float32Array.from(x));
const upI = (x: ArrayLike<number>): Buf => cpu.upload(Int32Array.from(x));
const get = (b: Buf): Float32Array => cpuData(b) as Float32Array;

/** Bit-for-bit equality of two float32 arrays (so 0 and −0, or two NaNs, are told apart). */
function expectBitEqual(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const a = new Uint32Array(Float32Array.from(actual).buffer), e = new Uint32Array(Float32Array.from(expected).buffer);
  if (a.length !== e.length) throw new Error(`${what}: lengths differ (${a.length} vs ${e.length})`);
  let bad = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad} of ${a.length} elements differ; first at ${first}: ${actual[first]} vs ${expected[first]}`,
    );
  }
}

/** Count of x in [0, n) with pred(x), and the 4σ band of a Binomial(n, q) around n·q. */
function expectBinomial(count: number, n: number, q: number, what: string): void {
  const sigma = Math.sqrt(n * q * (1 - q));
  const dev = Math.abs(count - n * q);
  if (dev > 4 * sigma) {
    throw new Error(`${what}: ${count} of ${n}, expected ${n * q} ± ${(4 * sigma).toFixed(1)} (4σ)`);
  }
}

// ---------------------------------------------------------------------------------------------------
// the hash and the mask
// ---------------------------------------------------------------------------------------------------

describe("dropout hash", () => {
  test("lowbias32 is the published function, and the parameters are derived as documented", () => {
    // Pinned values: a change here changes every mask (and breaks resuming a run with the same masks).
    expect(lowbias32(0)).toBe(0);
    expect([1, 2, 0xffffffff].map(lowbias32)).toEqual([1753845952, 3507691905, 1734902346]);
    const d = dropoutParams(0.1, 7);
    expect(d.key).toBe(lowbias32(7 ^ 0x9e3779b9));
    expect(d.threshold).toBe(Math.floor(0.1 * 2 ** 32));
    expect(d.scale).toBe(Math.fround(1 / 0.9));
    expect(dropoutHash(d.key, 5)).toBe(lowbias32(lowbias32(5) ^ d.key));
    expect(dropoutParams(0, 1).threshold).toBe(0);
    expect(dropoutParams(0, 1).scale).toBe(1);
    // seeds are taken mod 2³²
    expect(dropoutParams(0.5, -1).key).toBe(dropoutParams(0.5, 2 ** 32 - 1).key);
    expect(dropoutParams(0.5, 2 ** 32 + 3).key).toBe(dropoutParams(0.5, 3).key);
  });

  test("bad p or seed: clear errors", () => {
    for (const p of [1, -0.1, NaN, 1.5]) expect(() => dropoutParams(p, 1)).toThrow(/p must be in \[0, 1\)/);
    expect(() => dropoutParams(0.1, 1.5)).toThrow(/seed must be an integer/);
    expect(() => cpu.dropoutForward({ out: up([0]), inp: up([1]), n: 1, p: 1, seed: 0 })).toThrow(/dropoutForward/);
  });

  test("n = 100k: the dropped fraction is within 4σ of p; neighbours and seeds look independent", () => {
    const n = 100_000;
    for (const p of [0.1, 0.5, 0.9]) {
      for (const seed of [0, 1, 2, 12345, 2 ** 32 - 1]) {
        const d = dropoutParams(p, seed), d2 = dropoutParams(p, seed + 1);
        let dropped = 0, pairs = 0, bothSeeds = 0;
        let prev = false;
        for (let i = 0; i < n; i++) {
          const drop = !dropoutKeep(d, i);
          if (drop) dropped++;
          if (drop && prev) pairs++;
          if (drop && !dropoutKeep(d2, i)) bothSeeds++;
          prev = drop;
        }
        expectBinomial(dropped, n, p, `p ${p} seed ${seed}: dropped`);
        expectBinomial(pairs, n - 1, p * p, `p ${p} seed ${seed}: i and i+1 both dropped`);
        expectBinomial(bothSeeds, n, p * p, `p ${p} seeds ${seed}, ${seed + 1}: both dropped`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// CPU dropout
// ---------------------------------------------------------------------------------------------------

describe("cpu dropout", () => {
  const n = 1001;
  const x = uniform(n, 1, -3, 3);

  test("forward: kept values are exactly x·fround(1/(1−p)), dropped ones 0; out assigned", () => {
    for (const p of [0.1, 0.5]) {
      const out = up(uniform(n, 2)); // garbage: assigned
      cpu.dropoutForward({ out, inp: up(x), n, p, seed: 42 });
      const d = dropoutParams(p, 42);
      const scale = Math.fround(1 / (1 - p));
      const expected = Float32Array.from(x, (v, i) => (dropoutKeep(d, i) ? v * scale : 0));
      expectBitEqual(get(out), expected, `dropout p ${p}`);
      const zeros = get(out).filter((v) => v === 0).length;
      expect(zeros).toBeGreaterThan(0);
      expect(zeros).toBeLessThan(n);
    }
  });

  test("p = 0 is the identity (forward and backward)", () => {
    const out = cpu.alloc(n), dinp = cpu.alloc(n);
    cpu.dropoutForward({ out, inp: up(x), n, p: 0, seed: 9 });
    expectBitEqual(get(out), x, "p = 0 forward");
    cpu.dropoutBackward({ dinp, dout: up(x), n, p: 0, seed: 9 });
    expectBitEqual(get(dinp), x, "p = 0 backward");
  });

  test("backward applies exactly the forward's mask to dout (=, +=, in place); only n elements touched", () => {
    const p = 0.3, seed = 77;
    const maskScale = cpu.alloc(n + 3);
    cpu.dropoutForward({ out: maskScale, inp: up(new Float32Array(n + 3).fill(1)), n, p, seed }); // 0 or scale
    const m = get(maskScale);
    // dropped elements are +0 (not −0 for negative inputs, which g·0 would give)
    const apply = (g: number, i: number) => (m[i] === 0 ? 0 : Math.fround(g * m[i]!));
    const dout = uniform(n + 3, 3), base = uniform(n + 3, 4);
    const dinp = up(base);
    cpu.dropoutBackward({ dinp, dout: up(dout), n, p, seed });
    const expected = Float32Array.from(dout, (g, i) => (i < n ? apply(g, i) : base[i]!)); // tail untouched
    expectBitEqual(get(dinp), expected, "dropout backward =");
    const acc = up(base);
    cpu.dropoutBackward({ dinp: acc, dout: up(dout), n, p, seed, accumulate: true });
    const expectedAcc = Float32Array.from(base, (b, i) => (i < n ? b + apply(dout[i]!, i) : b));
    expectBitEqual(get(acc), expectedAcc, "dropout backward +=");
    const inPlace = up(dout);
    cpu.dropoutBackward({ dinp: inPlace, dout: inPlace, n, p, seed });
    expectBitEqual(get(inPlace), expected.map((v, i) => (i < n ? v : dout[i]!)), "dropout backward in place");
    const fwdInPlace = up(x);
    cpu.dropoutForward({ out: fwdInPlace, inp: fwdInPlace, n, p, seed });
    expectBitEqual(get(fwdInPlace), x.map(apply), "dropout forward in place");
  });
});

// ---------------------------------------------------------------------------------------------------
// CPU attention dropout
// ---------------------------------------------------------------------------------------------------

describe("cpu attention dropout", () => {
  // B=2, T=5, C=6, NH=2 (HS=3). Batch 0: right padding; batch 1: left padding (query 0 sees no key).
  const B = 2, T = 5, C = 6, NH = 2;
  const shape = { B, T, C, NH };
  const mask = [1, 1, 1, 0, 0, 0, 1, 1, 1, 1];
  const qkv = uniform(B * T * 3 * C, 60, -2, 2);
  const dropout: AttentionDropout = { p: 0.4, seed: 2024 };
  const drop = dropoutParams(dropout.p, dropout.seed);

  test("forward: att is the undropped softmax bit for bit; out against float64 with the same mask", () => {
    const plain = { out: cpu.alloc(B * T * C), att: cpu.alloc(B * NH * T * T) };
    cpu.attentionForward({ ...plain, qkv: up(qkv), mask: upI(mask), ...shape });
    const out = up(uniform(B * T * C, 61)), att = up(uniform(B * NH * T * T, 62)); // garbage: assigned
    cpu.attentionForward({ out, att, qkv: up(qkv), mask: upI(mask), ...shape, dropout });
    expectBitEqual(get(att), get(plain.att), "att with dropout");
    const ref = attention64(qkv, mask, shape, drop);
    // float64 reference rounded once vs float32 storage of P and P̃: ~1e-7 relative, 1e-6 leaves margin
    assertClose(get(out), ref.out, { atol: 1e-6 * Math.max(maxAbs(ref.out), 1), rtol: 1e-5 }, "attention out");
    // the mask matters: out differs from the undropped one, and some visible probabilities were dropped
    expect(maxAbs(get(out).map((v, i) => v - get(plain.out)[i]!))).toBeGreaterThan(0.01);
    let droppedVisible = 0;
    for (let a = 0; a < B * NH * T * T; a++) if (get(att)[a]! > 0 && !dropoutKeep(drop, a)) droppedVisible++;
    expect(droppedVisible).toBeGreaterThan(3);
  });

  test("backward against finite differences of the float64 reference with the same mask", () => {
    const out = cpu.alloc(B * T * C), att = cpu.alloc(B * NH * T * T);
    cpu.attentionForward({ out, att, qkv: up(qkv), mask: upI(mask), ...shape, dropout });
    const w = uniform(B * T * C, 63);
    const dqkv = up(uniform(B * T * 3 * C, 64)); // garbage: must be overwritten
    cpu.attentionBackward({ dqkv, dout: up(w), qkv: up(qkv), att, ...shape, dropout });
    // Central differences in float64 (h = 1e-5) are good to ~1e-9 relative; the backend's float32 storage
    // gives ~1e-7: 1e-5 × max|g| (+ 1e-4 relative) catches any formula error (an O(1) relative error).
    const expected = numGrad((xx) => dot(attention64(xx, mask, shape, drop).out, w), qkv);
    assertClose(get(dqkv), expected, { atol: 1e-5 * Math.max(maxAbs(expected), 1e-3), rtol: 1e-4 }, "dqkv");
    // and it is not the undropped gradient
    const plain = cpu.alloc(B * T * 3 * C);
    cpu.attentionBackward({ dqkv: plain, dout: up(w), qkv: up(qkv), att, ...shape });
    expect(maxAbs(get(plain).map((v, i) => v - get(dqkv)[i]!))).toBeGreaterThan(1e-3);
  });

  test("p = 0 equals no dropout bit for bit (forward and backward)", () => {
    const run = (d?: AttentionDropout) => {
      const out = cpu.alloc(B * T * C), att = cpu.alloc(B * NH * T * T), dqkv = cpu.alloc(B * T * 3 * C);
      cpu.attentionForward({ out, att, qkv: up(qkv), mask: upI(mask), ...shape, dropout: d });
      cpu.attentionBackward({ dqkv, dout: up(uniform(B * T * C, 65)), qkv: up(qkv), att, ...shape, dropout: d });
      return [get(out), get(att), get(dqkv)];
    };
    const [a, b] = [run(), run({ p: 0, seed: 5 })];
    for (let k = 0; k < 3; k++) expectBitEqual(b[k]!, a[k]!, `p = 0 output ${k}`);
    expect(() => run({ p: 1, seed: 5 })).toThrow(/attentionForward dropout: p must be in \[0, 1\)/);
  });
});

// ---------------------------------------------------------------------------------------------------
// WebGPU against the CPU
// ---------------------------------------------------------------------------------------------------

const available = await webgpuForTests("dropout_test");
const gpuTest = (name: string, fn: () => Promise<void>) => test.skipIf(!available)(name, fn, 120_000);

let device: WebGpuBackend | undefined;
async function gpu(): Promise<WebGpuBackend> {
  return device ??= await WebGpuBackend.create();
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

describe("webgpu dropout", () => {
  gpuTest("dropout forward and backward: the CPU's mask and values bit for bit (=, +=, in place, p = 0)", async () => {
    const g = await gpu();
    let k = 0;
    for (const n of [1, 255, 257, 100_003]) {
      for (const [p, seed] of [[0.1, 0], [0.5, 2 ** 32 - 1], [0.9, 12345], [0, 3]] as const) {
        const inputs = {
          x: Float32Array.from(uniform(n, ++k, -3, 3)),
          dout: Float32Array.from(uniform(n, ++k)),
          out: Float32Array.from(uniform(n, ++k)), // garbage: assigned
          dinp: Float32Array.from(uniform(n, ++k)), // garbage: assigned
          acc: Float32Array.from(uniform(n, ++k)),
          inPlace: Float32Array.from(uniform(n, ++k)),
        };
        const r = await both(g, inputs, (be, b) => {
          be.dropoutForward({ out: b.out!, inp: b.x!, n, p, seed });
          be.dropoutBackward({ dinp: b.dinp!, dout: b.dout!, n, p, seed });
          be.dropoutBackward({ dinp: b.acc!, dout: b.dout!, n, p, seed, accumulate: true });
          be.dropoutForward({ out: b.inPlace!, inp: b.inPlace!, n, p, seed });
        }, ["out", "dinp", "acc", "inPlace"]);
        for (const name of ["out", "dinp", "acc", "inPlace"]) {
          expectBitEqual(r.gpu[name]!, r.cpu[name]!, `n ${n} p ${p} seed ${seed} ${name}`);
        }
        if (p === 0) expectBitEqual(r.gpu.out!, inputs.x, `n ${n} p = 0 identity`);
      }
    }
  });

  // [B, T, C, NH]: T = 1; HS = 4; HS = 5 (C not a multiple of 4); T above the 64-key chunk; HS = 130 > 64.
  const shapes: [number, number, number, number][] = [[2, 1, 8, 2], [2, 7, 10, 2], [1, 70, 6, 1], [1, 3, 130, 1]];
  function attnMask(B: number, T: number): Int32Array {
    const m = new Int32Array(B * T).fill(1);
    m[0] = 0; // batch 0: the first position is padding, so query t = 0 sees no key at all
    if (T > 2) m[2] = 0;
    if (B > 1) m.fill(0, T, 2 * T); // batch 1: fully padded
    return m;
  }

  gpuTest("attention with dropout: att undropped, out and dqkv as the CPU; p = 0 is the plain kernel", async () => {
    const g = await gpu();
    for (const [B, T, C, NH] of shapes) {
      for (const [masked, p, seed] of [[true, 0.3, 11], [false, 0.5, 2 ** 31 + 5]] as const) {
        const inputs = {
          qkv: Float32Array.from(uniform(B * T * 3 * C, B + T + C, -2, 2)),
          mask: attnMask(B, T),
          out: new Float32Array(B * T * C),
          att: new Float32Array(B * NH * T * T),
          dout: Float32Array.from(uniform(B * T * C, 9)),
          dqkv: Float32Array.from(uniform(B * T * 3 * C, 10)), // must be overwritten (=)
          out0: new Float32Array(B * T * C),
          att0: new Float32Array(B * NH * T * T),
          dqkv0: new Float32Array(B * T * 3 * C),
          outP0: new Float32Array(B * T * C),
          dqkvP0: new Float32Array(B * T * 3 * C),
        };
        const s = { B, T, C, NH };
        const r = await both(g, inputs, (be, x) => {
          const mask = masked ? x.mask : undefined;
          const dropout = { p, seed };
          be.attentionForward({ out: x.out!, att: x.att!, qkv: x.qkv!, mask, ...s, dropout });
          be.attentionBackward({ dqkv: x.dqkv!, dout: x.dout!, qkv: x.qkv!, att: x.att!, ...s, dropout });
          be.attentionForward({ out: x.out0!, att: x.att0!, qkv: x.qkv!, mask, ...s });
          be.attentionBackward({ dqkv: x.dqkv0!, dout: x.dout!, qkv: x.qkv!, att: x.att0!, ...s });
          const none = { p: 0, seed };
          be.attentionForward({ out: x.outP0!, att: x.att0!, qkv: x.qkv!, mask, ...s, dropout: none });
          be.attentionBackward({ dqkv: x.dqkvP0!, dout: x.dout!, qkv: x.qkv!, att: x.att0!, ...s, dropout: none });
        }, ["out", "att", "dqkv", "att0", "out0", "dqkv0", "outP0", "dqkvP0"]);
        const what = `B${B} T${T} C${C} NH${NH} mask${+masked} p${p}`;
        // The same kernel up to the probabilities: att with dropout is the plain att, bit for bit.
        expectBitEqual(r.gpu.att!, r.gpu.att0!, `${what} att (dropout) vs att (none)`);
        // p = 0 takes the plain pipeline: identical results.
        expectBitEqual(r.gpu.outP0!, r.gpu.out0!, `${what} p = 0 out`);
        expectBitEqual(r.gpu.dqkvP0!, r.gpu.dqkv0!, `${what} p = 0 dqkv`);
        // As webgpu_ops_test's attention (exp to a few ulp, sums in another order), with values up to
        // 1/(1−p) = 2× larger: att 2e-6, out 2e-5 absolute, dqkv 4e-5 (+ 1e-4 relative).
        assertClose(r.gpu.att!, r.cpu.att!, { atol: 2e-6, rtol: 1e-5 }, `${what} att`);
        assertClose(r.gpu.out!, r.cpu.out!, { atol: 2e-5, rtol: 1e-5 }, `${what} out`);
        assertClose(r.gpu.dqkv!, r.cpu.dqkv!, { atol: 4e-5, rtol: 1e-4 }, `${what} dqkv`);
        if (T > 1) {
          // the dropout did something here (so the comparison above tests the mask)
          expect(maxAbs(r.gpu.out!.map((v, i) => v - r.gpu.out0![i]!))).toBeGreaterThan(1e-3);
        }
      }
    }
  });

  gpuTest("release device", async () => {
    device?.dispose();
    device = undefined;
    await Promise.resolve();
  });
});
