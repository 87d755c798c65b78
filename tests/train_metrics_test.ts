/**
 * The training log's fields as TRL logs them: the mean token accuracy (argmax of the logits = the label, over
 * the supervised positions), counted on the device by the cross-entropy op of each backend (CPU reference,
 * fast CPU, WebGPU's kernel with its in-place gradient) on logits whose argmax is known, ties included; and
 * the tokens seen (`num_tokens`), cumulative over steps and carried through a checkpoint, so that a resumed
 * run logs what a straight run logs. WebGPU tests are skipped without an adapter (a failure under CI).
 */

import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { toMessages } from "../src/data/synth.ts";
import { generateClassificationRecords } from "../src/data/synth.ts";
import { buildSftDataset } from "../src/data/sft_dataset.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { AdamW } from "../src/train/adamw.ts";
import { findCheckpoint, loadCheckpoint, saveCheckpoint } from "../src/train/checkpoint.ts";
import { formatStepLine, readMetrics } from "../src/train/metrics.ts";
import { NOTEBOOK_TRAIN_CONFIG, type StepLog, type TrainConfig, trainLoop } from "../src/train/trainer.ts";
import { trainMain } from "../src/cli/train.ts";
import { writeDataset } from "../src/data/synth.ts";
import { webgpuForTests } from "../src/testing/backends.ts";

const gpuAvailable = await webgpuForTests("train_metrics_test");

describe("token accuracy in the cross-entropy op", () => {
  // 5 rows of V = 300 (more than one workgroup's 256 lanes): the argmax of each is known
  const N = 5, V = 300;
  const logits = new Float32Array(N * V);
  for (let i = 0; i < logits.length; i++) logits[i] = Math.sin(i * 0.37); // < 1 everywhere
  const set = (n: number, v: number, x: number) => logits[n * V + v] = x;
  set(0, 7, 5); // row 0: argmax 7, target 7 → right
  set(1, 290, 5); // row 1: argmax 290 (past the first 256), target 3 → wrong
  set(2, 10, 5), set(2, 200, 5); // row 2: a tie, the first index wins: argmax 10, target 200 → wrong
  set(3, 10, 5), set(3, 200, 5); // row 3: the same tie, target 10 → right
  // row 4: ignored (target −100) → 0 whatever its logits
  const targets = Int32Array.of(7, 3, 200, 10, -100);
  const expected = [1, 0, 0, 1, 0];

  async function correctOn(be: Backend, inPlace: boolean): Promise<number[]> {
    const lg = be.upload(logits.slice()), tg = be.upload(targets), losses = be.alloc(N), correct = be.alloc(N);
    const dlogits = inPlace ? lg : undefined;
    be.crossEntropy({ losses, dlogits, logits: lg, targets: tg, N, V, scale: 1, correct });
    const out = [...(await be.read(correct))];
    for (const b of [lg, tg, losses, correct]) be.free(b);
    return out;
  }

  test("CPU reference and fast CPU: 1 where the first argmax is the target", async () => {
    for (const be of [new CpuBackend({ matmul: "reference" }), new CpuBackend()]) {
      expect(await correctOn(be, false)).toEqual(expected);
      expect(await correctOn(be, true)).toEqual(expected);
    }
  });

  test.skipIf(!gpuAvailable)("WebGPU: the same, also with the gradient written over the logits", async () => {
    const be = await WebGpuBackend.create();
    try {
      expect(await correctOn(be, false)).toEqual(expected);
      expect(await correctOn(be, true)).toEqual(expected);
    } finally {
      be.dispose();
    }
  }, 60_000);
});

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
const be = new CpuBackend();
const loaded = await loadModelDir(FIXTURE);
const tok = await BertTokenizer.fromDir(FIXTURE);
const examples = buildSftDataset(
  generateClassificationRecords(12, 42).map((r) => toMessages(r)),
  tok,
  { maxLength: 160, mask: "assistant+eos" },
).examples;
const config: TrainConfig = {
  ...NOTEBOOK_TRAIN_CONFIG,
  batchSize: 4,
  epochs: 2,
  maxSteps: 5,
  lr: 3e-3,
  warmupSteps: 2,
  logEvery: 1,
  maxLength: 160,
  dropout: false,
};
const fresh = () => GPT2.fromTensors(be, loaded.config, loaded.tensors);

describe("tokens seen and accuracy in the training loop", () => {
  test("accumulate over the steps, and a resumed run logs what a straight run logs", async () => {
    const straight: StepLog[] = [];
    await trainLoop({
      model: fresh(),
      train: examples,
      padId: tok.padTokenId,
      config,
      onStep: (s) => void straight.push(s),
    });
    expect(straight.map((s) => s.step)).toEqual([1, 2, 3, 4, 5]);
    // 12 examples in batches of 4, 3 steps an epoch: the tokens of steps 1–3 are the whole set
    const total = examples.reduce((n, e) => n + e.inputIds.length, 0);
    expect(straight[2]!.tokensSeen).toBe(total);
    for (let i = 1; i < 5; i++) expect(straight[i]!.tokensSeen).toBeGreaterThan(straight[i - 1]!.tokensSeen);
    for (const s of straight) {
      expect(s.meanTokenAccuracy).toBeGreaterThanOrEqual(0);
      expect(s.meanTokenAccuracy).toBeLessThanOrEqual(1);
    }
    // the tiny model learns the answers' tokens: later steps predict more of them
    expect(straight[4]!.meanTokenAccuracy).toBeGreaterThan(straight[0]!.meanTokenAccuracy);

    const dir = await mkdtemp(join(tmpdir(), "sft-metrics-"));
    try {
      const first = fresh();
      let steps = 0;
      await trainLoop({
        model: first,
        train: examples,
        padId: tok.padTokenId,
        config,
        onStep: () => void steps++,
        shouldStop: () => steps >= 2,
        onCheckpoint: (pos, opt) =>
          saveCheckpoint(join(dir, "ckpt"), { model: first, optimizer: opt, position: pos, config, run: {} }),
      });
      const ck = await loadCheckpoint((await findCheckpoint(join(dir, "ckpt")))!);
      expect(ck.state.position.tokensSeen).toBe(straight[1]!.tokensSeen);
      const resumed = fresh();
      for (const [name, t] of ck.params) be.write(resumed.param(name).buf, t.data);
      const opt = new AdamW(be, resumed.params, { lr: config.lr, weightDecay: 0.01, maxGradNorm: 1 }, resumed);
      opt.importState(ck.optimizer);
      const after: StepLog[] = [];
      await trainLoop({
        model: resumed,
        train: examples,
        padId: tok.padTokenId,
        config,
        optimizer: opt,
        start: ck.state.position,
        onStep: (s) => void after.push(s),
      });
      expect(after.map((s) => [s.step, s.tokensSeen, s.meanTokenAccuracy])).toEqual(
        straight.slice(2).map((s) => [s.step, s.tokensSeen, s.meanTokenAccuracy]),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("train writes num_tokens and mean_token_accuracy to metrics.jsonl and shows them on the step line", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sft-metrics-"));
    try {
      await writeDataset({ task: "classification", outDir: join(dir, "data"), counts: { train: 8, val: 4, test: 4 } });
      const lines: string[] = [];
      const argv = ["--model", FIXTURE, "--data-dir", join(dir, "data"), "--backend", "cpu", "--max-length", "160"];
      await trainMain(
        [...argv, "--max-steps", "2", "--log-every", "1", "--out", join(dir, "out"), "--run-dir", join(dir, "run")],
        (l) => lines.push(l),
      );
      const train = (await readMetrics(join(dir, "run", "metrics.jsonl"))).filter((m) => m.type === "train");
      expect(train.map((m) => m.step)).toEqual([1, 2]);
      for (const m of train) {
        if (m.type !== "train") continue;
        expect(m.mean_token_accuracy).toBeGreaterThanOrEqual(0);
        expect(m.mean_token_accuracy).toBeLessThanOrEqual(1);
      }
      const [a, b] = train as { num_tokens?: number }[];
      expect(a!.num_tokens).toBeGreaterThan(0);
      expect(b!.num_tokens).toBeGreaterThan(a!.num_tokens!);
      const stepLine = lines.find((l) => l.startsWith("Step    2/"));
      expect(stepLine).toMatch(/ \| Acc: \d\.\d{4} \| .* \| Seen: [\d,]+ \| /);
      expect(await readFile(join(dir, "run", "metrics.jsonl"), "utf8")).toContain('"num_tokens":');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the step line shows accuracy and tokens seen in TRL's order, only when given", () => {
    expect(formatStepLine({ step: 3, loss: 1, lr: 1e-4, gradNorm: 0.5, accuracy: 0.51234, tokensSeen: 12345 })).toBe(
      "Step    3 | Loss: 1.0000 | LR: 1.00e-04 | Grad: 0.500 | Acc: 0.5123 | Seen: 12,345",
    );
    expect(formatStepLine({ step: 3, loss: 1, lr: 1e-4 })).toBe("Step    3 | Loss: 1.0000 | LR: 1.00e-04");
  });
});
