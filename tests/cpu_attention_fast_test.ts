/**
 * The CPU backend's GEMM attention (src/backend/cpu/attention_blas.ts: the products of attentionForward
 * and attentionBackward through a strided GEMM — `cblas_sgemm`, or the WebAssembly kernel of cpu/wasm_matmul.ts)
 * against the reference loops of cpu.ts (`new CpuBackend({ matmul: "reference" })` vs `{ matmul: "blas" }`
 * and `{ matmul: "wasm" }`), forward and backward, at awkward
 * shapes: T = 1, T = 70 (two query blocks of 64, the second partial), HS = 5 and 64, batches with padding
 * (keys masked, and a row with every key masked: a fully masked query row), with and without dropout 0.1.
 *
 * Without a loadable OpenBLAS (or FFI) the BLAS tests are skipped with a notice, except under CI (`CI` set),
 * where .ci/run installs Debian's libopenblas0-pthread and a missing library is a failure.
 *
 * Tolerance: the reference sums in float64 and rounds once; BLAS and WASM sum K products in float32 (K = HS for the
 * scores and dP, K ≤ T for P·V, dV, dQ, dK), an error of at most about K·ε·Σ|terms| (ε = 2⁻²³). Inputs are
 * uniform in [−1, 1), so a score's terms sum to at most HS/√HS = √HS, and the softmax turns a score error δ
 * into a relative probability error ≤ 2δ: att gets rtol 4·HS·√HS·ε. out and dqkv are chains of such sums
 * (≤ HS + T terms, the probabilities summing to ≤ 1/(1−p)), each term and partial sum no larger than about
 * max|expected| for these inputs: we allow atol 4·(T + HS)·ε·max(|expected|, 1) (2·10⁻⁴ at the largest
 * case; the errors seen are ≤ 5·10⁻⁷), while a real mistake (a wrong stride, transpose, block edge, mask or
 * dropout index) is an error the size of a probability times a value, ≥ 10⁻³ here. Exact zeros of the
 * reference (masked and future keys, fully masked rows) must be exact zeros: checked separately.
 */

import { describe, test } from "bun:test";
import process from "node:process";
import { CpuBackend, cpuData } from "../src/backend/cpu.ts";
import { loadBlas } from "../src/backend/cpu/matmul.ts";
import type { AttentionDropout, Buf } from "../src/backend/backend.ts";
import { assertClose, maxAbs } from "../src/testing/compare.ts";
import { uniformRng as rng } from "../src/model/rng.ts";

const loaded = loadBlas();
const available = "blas" in loaded;
if (!available) {
  if (process.env.CI) {
    throw new Error(
      `cpu_attention_fast_test: BLAS is not available, and CI is set (.ci/run installs it): ${loaded.reason}`,
    );
  }
  console.log(`cpu_attention_fast_test: no BLAS (${loaded.reason}); skipping the BLAS attention tests`);
}
type Impl = "blas" | "wasm";
/** A test of one implementation: the WASM GEMM always runs, BLAS where it loads. */
const implTest = (impl: Impl) => (name: string, fn: () => void) =>
  test.skipIf(impl === "blas" && !available)(name, fn, 60_000);

const EPS = 2 ** -23;

/** n values uniform in [−1, 1), as float32. */
function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 2 * r() - 1;
  return x;
}

interface Case {
  B: number;
  T: number;
  NH: number;
  HS: number;
  /**
   * Pad: row 0 real, row 1 with some keys masked (incl. key 0: query 0 sees nothing; the general per-key
   * path), row 2 right-padded after ⌈T/2⌉ keys (as `collate` pads: the prefix path), later rows all padding.
   */
  pad: boolean;
  dropout?: AttentionDropout;
}

interface Result {
  out: Float32Array;
  att: Float32Array;
  dqkv: Float32Array;
}

function run(be: CpuBackend, c: Case, qkv: Float32Array, dout: Float32Array, mask?: Int32Array): Result {
  const { B, T, NH, HS } = c, C = NH * HS;
  const get = (b: Buf) => (cpuData(b) as Float32Array).slice();
  const q = be.upload(qkv), out = be.alloc(B * T * C), att = be.alloc(B * NH * T * T);
  // dqkv starts as garbage: the op must assign it
  const dqkv = be.upload(rand(B * T * 3 * C, 99)), d = be.upload(dout);
  const m = mask ? be.upload(mask) : undefined;
  be.attentionForward({ out, att, qkv: q, mask: m, B, T, C, NH, dropout: c.dropout });
  be.attentionBackward({ dqkv, dout: d, qkv: q, att, B, T, C, NH, dropout: c.dropout });
  return { out: get(out), att: get(att), dqkv: get(dqkv) };
}

function padMask(B: number, T: number): Int32Array {
  const mask = new Int32Array(B * T).fill(1);
  for (let b = 1; b < B; b++) {
    for (let t = 0; t < T; t++) {
      // row 1: keys 0, 3, 6, … masked (so query 0 sees no key); row 2: keys from ⌈T/2⌉ on; rows ≥ 3: all
      if (b >= 3 || (b === 2 && t >= Math.ceil(T / 2)) || (b === 1 && t % 3 === 0)) mask[b * T + t] = 0;
    }
  }
  return mask;
}

function check(impl: Impl, c: Case): void {
  const { B, T, NH, HS } = c, C = NH * HS;
  const qkv = rand(B * T * 3 * C, 1 + T + HS), dout = rand(B * T * C, 2 + T * HS);
  const mask = c.pad ? padMask(B, T) : undefined;
  const ref = run(new CpuBackend({ matmul: "reference" }), c, qkv, dout, mask);
  const got = run(new CpuBackend({ matmul: impl, threads: 1 }), c, qkv, dout, mask);
  const what = `${impl} B=${B} T=${T} NH=${NH} HS=${HS} pad=${c.pad} p=${c.dropout?.p ?? 0}`;
  // zeros of the reference (masked / future keys, fully masked rows) are exact zeros here too
  for (const [name, a, e] of [["att", got.att, ref.att], ["out", got.out, ref.out]] as const) {
    let wrong = 0;
    for (let i = 0; i < e.length; i++) if (e[i] === 0 && a[i] !== 0) wrong++;
    if (wrong > 0) throw new Error(`${what} ${name}: ${wrong} nonzero values where the reference has 0`);
  }
  const ra = assertClose(got.att, ref.att, { atol: 1e-30, rtol: 4 * HS * Math.sqrt(HS) * EPS }, `${what} att`);
  if (process.env.ATTN_VERBOSE) console.log(what, "att", ra.maxAbsErr);
  for (const [name, a, e] of [["out", got.out, ref.out], ["dqkv", got.dqkv, ref.dqkv]] as const) {
    const atol = 4 * (T + HS) * EPS * Math.max(maxAbs(e), 1);
    const r = assertClose(a, e, { atol }, `${what} ${name}`);
    if (process.env.ATTN_VERBOSE) console.log(what, name, r.maxAbsErr, atol, maxAbs(e));
  }
}

for (const impl of ["blas", "wasm"] as const) {
  const t = implTest(impl);
  describe(`cpu ${impl} attention vs the reference loops`, () => {
    const drop = { p: 0.1, seed: 1234 };
    for (const dropout of [undefined, drop]) {
      const p = dropout ? " dropout 0.1" : "";
      t(`T=1, HS=5${p}`, () => check(impl, { B: 2, T: 1, NH: 3, HS: 5, pad: false, dropout }));
      t(`T=1, HS=5, padding${p}`, () => check(impl, { B: 4, T: 1, NH: 2, HS: 5, pad: true, dropout }));
      t(`T=70, HS=5, padding${p}`, () => check(impl, { B: 4, T: 70, NH: 3, HS: 5, pad: true, dropout }));
      t(`T=70, HS=64${p}`, () => check(impl, { B: 1, T: 70, NH: 2, HS: 64, pad: false, dropout }));
      t(`T=130, HS=64, padding${p}`, () => check(impl, { B: 4, T: 130, NH: 1, HS: 64, pad: true, dropout }));
    }
  });
}

for (const impl of ["blas", "wasm"] as const) {
  describe(`cpu ${impl} cached attention (the KV-cache inference path) vs the reference loops`, () => {
    // a prefill of `first` positions, then one position at a time, into caches of Tmax; batch row 1 has its first
    // two keys masked (left padding) and row 2 a hole, so the masked softmax is exercised
    function run(be: CpuBackend, B: number, NH: number, HS: number, Tmax: number, first: number) {
      const C = NH * HS;
      const kc = be.upload(rand(B * NH * Tmax * HS, 7)), vc = be.upload(rand(B * NH * Tmax * HS, 8)); // garbage
      const mask = new Int32Array(B * Tmax).fill(1);
      if (B > 1) mask.fill(0, Tmax, Tmax + 2);
      if (B > 2) mask[2 * Tmax + 3] = 0;
      const m = be.upload(mask);
      const outs: Float32Array[] = [];
      for (let pos0 = 0; pos0 < Tmax;) {
        const Tn = pos0 === 0 ? first : 1;
        const out = be.alloc(B * Tn * C);
        const qkv = be.upload(rand(B * Tn * 3 * C, 100 + pos0));
        be.attentionCached({ out, qkv, kcache: kc, vcache: vc, mask: m, B, Tn, pos0, Tmax, C, NH });
        outs.push((cpuData(out) as Float32Array).slice());
        pos0 += Tn;
      }
      return { outs, kc: (cpuData(kc) as Float32Array).slice(), vc: (cpuData(vc) as Float32Array).slice() };
    }
    for (const [B, NH, HS, Tmax, first] of [[3, 2, 5, 9, 4], [2, 3, 64, 40, 33], [1, 1, 16, 1, 1]] as const) {
      implTest(impl)(`B=${B} NH=${NH} HS=${HS} Tmax=${Tmax}, prefill ${first} then token by token`, () => {
        const ref = run(new CpuBackend({ matmul: "reference" }), B, NH, HS, Tmax, first);
        const got = run(new CpuBackend({ matmul: impl, threads: 1 }), B, NH, HS, Tmax, first);
        // the caches are copies: the same bits; the outputs are float32 sums of ≤ Tmax + HS terms (see the top)
        for (const k of ["kc", "vc"] as const) {
          for (let i = 0; i < ref[k].length; i++) {
            if (!Object.is(got[k][i], ref[k][i])) throw new Error(`${k}[${i}]: ${got[k][i]} vs ${ref[k][i]}`);
          }
        }
        for (const [j, e] of ref.outs.entries()) {
          assertClose(got.outs[j]!, e, { atol: 4 * (Tmax + HS) * EPS * Math.max(maxAbs(e), 1) }, `step ${j} out`);
        }
      });
    }
  });
}
