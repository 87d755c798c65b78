/**
 * Packing (src/data/packing.ts): the packer's rows (best-fit decreasing, no example split, boundary labels,
 * positions restarting per example), and that a packed batch trains exactly as the same examples unpacked:
 * the loss and every parameter gradient of GPT-2 on packed rows (segment ids as a block-diagonal causal
 * mask, position ids) equal those of the padded batch, on the CPU reference, the fast CPU backend and
 * WebGPU with each of its attention kernels; and the segment-masked attention op of every backend against
 * the reference at a shape that spans several of the flash kernels' query blocks and key tiles; and
 * `train --packing` (rows counted as steps, the flag kept by `--resume`); and that bench/packing.ts runs.
 *
 * WebGPU tests are skipped without an adapter, except under CI (`CI` set), where that is a failure.
 * Tolerances: the packed and the unpacked batch do the same float32 arithmetic per example, but the sums over
 * rows (weight gradients, the loss) and BLAS's blocking differ in order, so they agree to float32 rounding of
 * sums over the batch: atol 2e-6 (gradients here are ≲ 0.05), rtol 1e-4.
 */

import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainMain } from "../src/cli/train.ts";
import { packingBenchMain } from "../bench/packing.ts";
import { writeDataset } from "../src/data/synth.ts";
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import type { AttentionKernel } from "../src/backend/webgpu/options.ts";
import { packExamples, packingSummary } from "../src/data/packing.ts";
import { collate, type SftExample } from "../src/data/sft_dataset.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { type Batch, GPT2 } from "../src/model/gpt2.ts";
import { webgpuForTests } from "../src/testing/backends.ts";
import { assertClose } from "../src/testing/compare.ts";

const gpuAvailable = await webgpuForTests("packing_test");

/** A small deterministic PRNG (mulberry32), uniform in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Examples of the given lengths: random ids, the first third of each unsupervised (a prompt). */
function examples(lengths: readonly number[], V: number, seed = 1): SftExample[] {
  const r = rng(seed);
  return lengths.map((n) => {
    const inputIds = Array.from({ length: n }, () => Math.floor(r() * V));
    const labels = inputIds.map((id, t) => (t < Math.ceil(n / 3) ? -100 : id));
    return { inputIds, labels, supervised: labels.filter((l) => l !== -100).length };
  });
}

describe("packExamples", () => {
  const lengths = [7, 3, 9, 2, 5, 5, 8, 1, 4];
  const exs = examples(lengths, 50);
  const rows = packExamples(exs, 10);

  test("best-fit decreasing: every example in exactly one row, whole, rows within max length", () => {
    // longest first, each into the fullest row it still fits: 9, 8, 7 and 5 open rows; the second 5 fills the
    // row of 5; 4 fits none (room 1, 2, 3, 0) and opens one; 3 fills the row of 7, 2 that of 8, 1 that of 9
    expect(rows.map((r) => r.sources.map((i) => lengths[i]))).toEqual([[9, 1], [8, 2], [7, 3], [5, 5], [4]]);
    expect(rows.flatMap((r) => r.sources).sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const r of rows) {
      expect(r.inputIds.length).toBeLessThanOrEqual(10);
      expect(r.inputIds).toEqual(r.sources.flatMap((i) => exs[i]!.inputIds));
    }
    expect(packingSummary(exs.length, rows, 10)).toEqual({ examples: 9, rows: 5, fill: 44 / 50 });
  });

  test("segment ids count examples from 1, positions restart at 0, each example's first label is -100", () => {
    const r = rows[3]!; // [5, 5]: examples 4 and 5
    expect(r.sources).toEqual([4, 5]);
    expect(r.segmentIds).toEqual([1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    expect(r.positionIds).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    const [a, b] = [exs[4]!, exs[5]!];
    expect(r.labels).toEqual([-100, ...a.labels.slice(1), -100, ...b.labels.slice(1)]);
    // a first token supervised in its own example (mask "none") loses its label too: nothing predicts it
    const plain = [{ inputIds: [1, 2, 3], labels: [1, 2, 3], supervised: 3 }, {
      inputIds: [4, 5],
      labels: [4, 5],
      supervised: 2,
    }];
    const [row] = packExamples(plain, 8);
    expect(row!.labels).toEqual([-100, 2, 3, -100, 5]);
    expect(row!.supervised).toBe(3);
  });

  test("an example longer than max length is refused (tokenization truncates to it)", () => {
    expect(() => packExamples(examples([11], 50), 10)).toThrow(/example 1: it has 11 tokens, more than max length 10/);
    expect(() => packExamples(exs, 0)).toThrow(/maxLength must be a positive integer/);
  });

  test("collate pads packed rows only at their end, with segment and position ids 0 there", () => {
    const batch = collate([rows[3]!, exs[1]!], { padId: 0 });
    expect(batch.T).toBe(10);
    expect([...batch.segmentIds!]).toEqual([1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect([...batch.positionIds!]).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0]);
    expect([...batch.attentionMask!].slice(10)).toEqual([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect(batch.tokens).toBe(13);
    expect(collate(exs.slice(0, 2), { padId: 0 }).segmentIds).toBeUndefined();
  });
});

const config: GPT2Config = {
  vocabSize: 37,
  nPositions: 32,
  nEmbd: 24,
  nLayer: 2,
  nHead: 3,
  layerNormEpsilon: 1e-5,
  activationFunction: "gelu_new",
  embdPdrop: 0,
  residPdrop: 0,
  attnPdrop: 0,
  tieWordEmbeddings: true,
  raw: {},
};

/** The loss and every parameter gradient of `batch` on a fresh random model (seed 3) on `be`. */
async function lossAndGrads(be: Backend, batch: Batch): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  const model = GPT2.random(be, config, 3);
  model.zeroGrad();
  const out = model.loss(batch, { backward: true });
  const loss = (await be.read(out.loss))[0]!;
  be.free(out.loss);
  const grads = new Map<string, Float32Array>();
  for (const [name, t] of model.params) grads.set(name, (await be.read(t.grad!)) as Float32Array);
  model.dispose();
  return { loss, grads };
}

/** The packed rows of mixed-length examples and the same examples as one padded batch. */
function packedAndPadded(): { packed: Batch; padded: Batch } {
  const exs = examples([13, 4, 9, 20, 2, 7, 11, 6, 16, 3], config.vocabSize, 7);
  const rows = packExamples(exs, 24);
  expect(rows.length).toBeLessThan(exs.length);
  return { packed: collate(rows, { padId: 0 }), padded: collate(exs, { padId: 0 }) };
}

async function expectPackedEqualsPadded(be: Backend): Promise<void> {
  const { packed, padded } = packedAndPadded();
  const a = await lossAndGrads(be, packed), b = await lossAndGrads(be, padded);
  assertClose([a.loss], [b.loss], { atol: 1e-6, rtol: 1e-5 }, "loss");
  for (const [name, g] of b.grads) assertClose(a.grads.get(name)!, g, { atol: 2e-6, rtol: 1e-4 }, name);
  // and the mask matters: the same rows without segment ids (attending across examples) give another loss
  const { segmentIds: _, ...leaky } = packed;
  const c = await lossAndGrads(be, leaky);
  expect(Math.abs(c.loss - b.loss)).toBeGreaterThan(1e-4);
}

describe("a packed batch trains as the same examples unpacked", () => {
  test("CPU reference", async () => {
    await expectPackedEqualsPadded(new CpuBackend({ matmul: "reference" }));
  });

  test("fast CPU backend", async () => {
    const be = new CpuBackend();
    await expectPackedEqualsPadded(be);
    be.dispose?.();
  });

  for (const attention of ["matmul", "rows", "flash"] as AttentionKernel[]) {
    test.skipIf(!gpuAvailable)(`WebGPU, attention "${attention}"`, async () => {
      const be = await WebGpuBackend.create({ attention });
      try {
        await expectPackedEqualsPadded(be);
      } finally {
        be.dispose();
      }
    }, 120_000);
  }
});

describe("segment-masked attention on every backend against the reference", () => {
  // T = 150: three query blocks of the flash kernels, segments across block and tile edges, padding at the end
  const B = 2, T = 150, C = 12, NH = 2;
  const seg = new Int32Array(B * T);
  const lens = [[40, 70, 1, 30], [64, 65]];
  lens.forEach((row, b) => {
    let t = 0;
    row.forEach((n, k) => {
      seg.fill(k + 1, b * T + t, b * T + t + n);
      t += n;
    });
  });
  const r = rng(11);
  const qkv = Float32Array.from({ length: B * T * 3 * C }, () => 2 * r() - 1);
  const dout = Float32Array.from({ length: B * T * C }, () => 2 * r() - 1);

  async function run(be: Backend): Promise<{ out: Float32Array; dqkv: Float32Array }> {
    const q = be.upload(qkv), m = be.upload(seg), d = be.upload(dout);
    const out = be.alloc(B * T * C), dq = be.alloc(B * T * 3 * C);
    const att = be.alloc(be.attentionSavedLength?.(B, T, NH) ?? B * NH * T * T);
    be.attentionForward({ out, att, qkv: q, mask: m, B, T, C, NH });
    be.attentionBackward({ dqkv: dq, dout: d, qkv: q, att, mask: m, B, T, C, NH });
    const res = { out: (await be.read(out)) as Float32Array, dqkv: (await be.read(dq)) as Float32Array };
    for (const b of [q, m, d, out, dq, att]) be.free(b);
    return res;
  }

  const reference = run(new CpuBackend({ matmul: "reference" }));

  test("the reference: a query sees only its own segment (equal to that segment alone)", async () => {
    const ref = await reference;
    // segment 2 of row 0 (t 40 … 109) alone, as a batch of one row of 70
    const n = 70, lo = 40;
    const be = new CpuBackend({ matmul: "reference" });
    const q = be.upload(qkv.slice(lo * 3 * C, (lo + n) * 3 * C)), out = be.alloc(n * C), att = be.alloc(NH * n * n);
    be.attentionForward({ out, att, qkv: q, B: 1, T: n, C, NH });
    assertClose(ref.out.subarray(lo * C, (lo + n) * C), (await be.read(out)) as Float32Array, { atol: 0 }, "out");
  });

  test("fast CPU backend", async () => {
    const ref = await reference, be = new CpuBackend();
    const got = await run(be);
    assertClose(got.out, ref.out, { atol: 1e-5, rtol: 1e-4 }, "out");
    assertClose(got.dqkv, ref.dqkv, { atol: 1e-5, rtol: 1e-4 }, "dqkv");
  });

  for (const attention of ["matmul", "rows", "flash"] as AttentionKernel[]) {
    test.skipIf(!gpuAvailable)(`WebGPU, attention "${attention}"`, async () => {
      const ref = await reference, be = await WebGpuBackend.create({ attention });
      try {
        const got = await run(be);
        assertClose(got.out, ref.out, { atol: 1e-5, rtol: 1e-4 }, "out");
        assertClose(got.dqkv, ref.dqkv, { atol: 1e-5, rtol: 1e-4 }, "dqkv");
      } finally {
        be.dispose();
      }
    }, 120_000);
  }
});

describe("train --packing", () => {
  const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;

  test(
    "packs the rows, counts steps in rows, and is kept by --resume (and refused against an unpacked run)",
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "sft-packing-"));
      try {
        await writeDataset({
          task: "classification",
          outDir: join(dir, "data"),
          counts: { train: 12, val: 4, test: 4 },
        });
        const common = ["--model", FIXTURE, "--data-dir", join(dir, "data"), "--backend", "cpu", "--quiet"];
        const flags = ["--max-length", "256", "--batch-size", "2", "--lr", "1e-3", "--no-dropout"];
        const lines: string[] = [];
        const run = join(dir, "run");
        const args = [...common, ...flags, "--out", join(dir, "out"), "--run-dir", run];
        await trainMain([...args, "--packing", "--epochs", "1"], (l) => lines.push(l));
        const packed = lines.find((l) => l.startsWith("Packed 12 examples into "));
        expect(packed).toBeDefined();
        const rows = Number(/into (\d+) rows of 256 tokens/.exec(packed!)![1]);
        expect(rows).toBeLessThan(12);
        // an epoch of ⌈rows / 2⌉ steps (12 unpacked examples would be 6)
        expect(lines).toContain(`  Total steps: ${Math.ceil(rows / 2)}`);
        const state = JSON.parse(await readFile(join(run, "checkpoint", "trainer_state.json"), "utf8"));
        expect(state.config.packing).toBe(true);
        // --resume without the flag keeps packing: a second epoch of as many steps
        const again: string[] = [];
        await trainMain([...common, "--resume", "--run-dir", run, "--epochs", "2"], (l) => again.push(l));
        expect(again).toContain(packed!);
        expect(again).toContain(`  Total steps: ${2 * Math.ceil(rows / 2)}`);
        // an unpacked run's checkpoint refuses --packing on resume
        const plain = join(dir, "plain");
        await trainMain(
          [...common, ...flags, "--out", join(dir, "out2"), "--run-dir", plain, "--max-steps", "1"],
          () => {},
        );
        await expect(
          trainMain([...common, "--resume", "--run-dir", plain, "--max-steps", "2", "--packing"], () => {}),
        ).rejects.toThrow("--packing here, no --packing in the checkpoint");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});

describe("bench/packing.ts", () => {
  test("runs both ways on the tiny shape; packing needs fewer steps for the same tokens", async () => {
    const lines: string[] = [];
    expect(await packingBenchMain(["--shape", "tiny", "--examples", "16", "--json"], (l) => lines.push(l))).toBe(0);
    const { figures } = JSON.parse(lines.at(-1)!) as { figures: { packing: boolean; steps: number; tokens: number }[] };
    const [padded, packed] = figures;
    expect(padded!.packing).toBe(false);
    expect(packed!.packing).toBe(true);
    expect(padded!.steps).toBe(4); // 16 examples in batches of 4
    expect(packed!.steps).toBeLessThan(padded!.steps);
    expect(packed!.tokens).toBe(padded!.tokens);
  }, 60_000);
});
