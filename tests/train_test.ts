// Training on the CPU backend with the fixture's tiny model: a resumed run equals an uninterrupted one bit
// for bit (weights, AdamW moments, step and data order are all in the checkpoint); a non-finite loss stops
// the run with its step and keeps the last good checkpoint; the whole run writes an HF model dir, metrics
// and a loss curve; bad settings fail before any training.
import { describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../src/backend/cpu.ts";
import { toMessages, writeDataset } from "../src/data/synth.ts";
import { buildSftDataset } from "../src/data/sft_dataset.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { AdamW } from "../src/train/adamw.ts";
import { findCheckpoint, loadCheckpoint, saveCheckpoint } from "../src/train/checkpoint.ts";
import { checkLabels, checkTrainConfig, loadTaskRecords, runTraining } from "../src/train/run.ts";
import { NonFiniteLossError, NOTEBOOK_TRAIN_CONFIG, type TrainConfig, trainLoop } from "../src/train/trainer.ts";
import { trainMain } from "../src/cli/train.ts";
import { numberFlag } from "../src/cli/args.ts";
import process from "node:process";
import { generateClassificationRecords } from "../src/data/synth.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
const be = new CpuBackend();
const loaded = await loadModelDir(FIXTURE);
const tok = await BertTokenizer.fromDir(FIXTURE);
const records = generateClassificationRecords(12, 42);
const examples = buildSftDataset(records.map((r) => toMessages(r)), tok, { maxLength: 160, mask: "assistant+eos" })
  .examples;
const config: TrainConfig = {
  ...NOTEBOOK_TRAIN_CONFIG,
  batchSize: 4,
  epochs: 2,
  maxSteps: 5, // 3 batches per epoch: the run crosses an epoch boundary
  lr: 1e-3,
  warmupSteps: 2,
  logEvery: 1,
  maxLength: 160,
};
const fresh = () => GPT2.fromTensors(be, loaded.config, loaded.tensors);
const newOptimizer = (m: GPT2) =>
  new AdamW(be, m.params, { lr: config.lr, weightDecay: config.weightDecay, maxGradNorm: config.maxGradNorm }, m);

async function tmp(): Promise<string> {
  return await mkdtemp(join(tmpdir(), "sft-train-"));
}

describe("training loop", () => {
  test("interrupted after 2 steps and resumed from the checkpoint: the same weights as a straight run", async () => {
    const straight = fresh();
    const a = await trainLoop({ model: straight, train: examples, padId: tok.padTokenId, config });
    expect(a.position.step).toBe(5);
    expect(a.stoppedBy).toBe("max_steps");

    const dir = await tmp();
    try {
      const first = fresh();
      let steps = 0;
      const b = await trainLoop({
        model: first,
        train: examples,
        padId: tok.padTokenId,
        config,
        onStep: () => void steps++,
        shouldStop: () => steps >= 2,
        onCheckpoint: (pos, opt) =>
          saveCheckpoint(join(dir, "ckpt"), { model: first, optimizer: opt, position: pos, config, run: {} }),
      });
      expect(b.stoppedBy).toBe("interrupt");
      const ck = await loadCheckpoint((await findCheckpoint(join(dir, "ckpt")))!);
      expect(ck.state.position.step).toBe(2);

      const resumed = fresh();
      for (const [name, t] of ck.params) be.write(resumed.param(name).buf, t.data);
      const opt = newOptimizer(resumed);
      opt.importState(ck.optimizer);
      const c = await trainLoop({
        model: resumed,
        train: examples,
        padId: tok.padTokenId,
        config,
        optimizer: opt,
        start: ck.state.position,
      });
      expect(c.position.step).toBe(5);
      for (const [name, t] of straight.params) {
        // CPU arithmetic is deterministic: the same operations in the same order give the same bits
        expect(await resumed.param(name).read()).toEqual(await t.read());
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a non-finite loss stops the run at its step and keeps the last good checkpoint", async () => {
    const dir = await tmp();
    try {
      const model = fresh();
      const saved: number[] = [];
      const run = trainLoop({
        model,
        train: examples,
        padId: tok.padTokenId,
        config: { ...config, lr: 1e30, warmupSteps: 0, maxGradNorm: 1e30 },
        checkpointEvery: 1,
        onCheckpoint: async (pos, opt) => {
          saved.push(pos.step);
          await saveCheckpoint(join(dir, "ckpt"), { model, optimizer: opt, position: pos, config, run: {} });
        },
      });
      let err: unknown;
      try {
        await run;
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NonFiniteLossError);
      const step = (err as NonFiniteLossError).step;
      expect(step).toBeGreaterThan(1);
      expect((err as Error).message).toContain(`at step ${step}`);
      // checkpoints were written for the steps before the bad one, none after
      expect(Math.max(...saved)).toBe(step - 1);
      const ck = await loadCheckpoint((await findCheckpoint(join(dir, "ckpt")))!);
      expect(ck.state.position.step).toBe(step - 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("learning-rate decay", () => {
  test("a linear decay reaches 0 at the last step; the warm-up steps train as the notebook's", async () => {
    const lrs: number[] = [], constLrs: number[] = [];
    const cfg = { ...config, epochs: 1, maxSteps: 3, warmupSteps: 1, dropout: false };
    await trainLoop({
      model: fresh(),
      train: examples,
      padId: tok.padTokenId,
      config: { ...cfg, lrDecay: "linear" },
      onStep: (l) => void lrs.push(l.lr),
    });
    await trainLoop({
      model: fresh(),
      train: examples,
      padId: tok.padTokenId,
      config: cfg,
      onStep: (l) => void constLrs.push(l.lr),
    });
    // printed after each step: the rate of the next one (get_last_lr); 3 steps, 1 of warm-up
    expect(lrs[0]).toBeCloseTo(config.lr, 12); // the warm-up's end: full rate
    expect(lrs[1]).toBeCloseTo(config.lr / 2, 12);
    expect(lrs[2]).toBe(0);
    expect(constLrs.slice(0, 1)).toEqual(lrs.slice(0, 1));
    expect(constLrs[2]).toBe(lrs[0]);
    await expect(trainMain(["--lr-schedule", "step"], () => {})).rejects.toThrow('Invalid --lr-schedule: "step"');
  });
});

describe("validation every N steps", () => {
  test("--eval-every: the val loss mid-epoch, in the metrics and on the loss curve; the epoch's own at its end", async () => {
    const dir = await tmp();
    try {
      await writeDataset({ task: "classification", outDir: join(dir, "data"), counts: { train: 12, val: 4, test: 4 } });
      // 3 steps an epoch, 5 in all; the steps of the validation entries in metrics.jsonl, and the run's result
      const valSteps = async (name: string, evalEvery?: number) => {
        const r = await runTraining({
          model: fresh(),
          tokenizer: tok,
          modelName: FIXTURE,
          task: "classification",
          dataDir: join(dir, "data"),
          mask: "assistant+eos",
          config: { ...config, batchSize: 4, epochs: 2, maxSteps: 5, logEvery: 1, dropout: false },
          evalEvery,
          outDir: join(dir, `out-${name}`),
          runDir: join(dir, name),
          quiet: true,
          print: () => {},
        });
        const metrics = (await readFile(join(dir, name, "metrics.jsonl"), "utf8")).trim().split("\n");
        const vals = metrics.map((l) => JSON.parse(l)).filter((m) => m.type === "val");
        return { r, steps: vals.map((m) => m.step), epochEnd: vals.map((m) => m.train_loss !== undefined) };
      };
      const every = await valSteps("every", 1);
      // steps 1, 2 mid-epoch; 3 the end of epoch 1; 4 mid-epoch; 5 the cap (epoch 2's end)
      expect(every.steps).toEqual([1, 2, 3, 4, 5]);
      expect(every.epochEnd).toEqual([false, false, true, false, true]);
      expect(every.r.steps).toBe(5);
      expect(every.r.valLosses).toHaveLength(2); // the epochs' own
      expect((await valSteps("notebook")).steps).toEqual([3, 5]); // without the flag: the epochs' only
      // each validation is announced first with its size (minutes on a CPU at the real shape)
      const announced: number[] = [];
      await trainLoop({
        model: fresh(),
        train: examples,
        val: examples.slice(0, 4),
        padId: tok.padTokenId,
        config: { ...config, epochs: 1, maxSteps: 3 },
        evalEvery: 2,
        onEval: () => {},
        onValidate: (n) => void announced.push(n),
      });
      expect(announced).toEqual([4, 4]); // step 2, then the epoch's end at step 3
      await expect(trainMain(["--eval-every=-1"], () => {})).rejects.toThrow("Invalid --eval-every: -1");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("gradient accumulation", () => {
  // one epoch of the 12 examples, no dropout (its masks are drawn per batch): 8 × 1, 4 × 2 and 2 × 4 split the
  // epoch into the same two steps (8 examples, then the 4 left), so they must compute the same training
  const accumConfig = (batchSize: number, gradAccum: number): TrainConfig => ({
    ...config,
    batchSize,
    gradAccum,
    epochs: 1,
    maxSteps: 1000,
    dropout: false,
  });
  async function run(batchSize: number, gradAccum: number) {
    const model = fresh();
    const logs: { loss: number; gradNorm: number }[] = [];
    let trainLoss = NaN;
    const r = await trainLoop({
      model,
      train: examples,
      padId: tok.padTokenId,
      config: accumConfig(batchSize, gradAccum),
      onStep: (l) => void logs.push({ loss: l.loss, gradNorm: l.gradNorm }),
      onEpoch: (e) => void (trainLoss = e.trainLoss),
    });
    const params = new Map<string, Float32Array>();
    for (const [name, t] of model.params) params.set(name, (await t.read()) as Float32Array);
    return { r, logs, trainLoss, params };
  }

  test("a batch of 8, 4 × 2 accumulated and 2 × 4 accumulated: the same losses, norms and weights", async () => {
    const whole = await run(8, 1);
    expect(whole.r.position.step).toBe(2);
    for (const [bs, k] of [[4, 2], [2, 4]] as const) {
      const acc = await run(bs, k);
      expect(acc.r.position.step).toBe(2); // ceil(ceil(12 / bs) / k)
      expect(acc.logs).toHaveLength(2);
      for (let i = 0; i < 2; i++) {
        // the logged loss is the step's: the mean over the supervised tokens of all its batches
        expect(Math.abs(acc.logs[i]!.loss - whole.logs[i]!.loss)).toBeLessThan(1e-5 * whole.logs[i]!.loss);
        expect(Math.abs(acc.logs[i]!.gradNorm - whole.logs[i]!.gradNorm)).toBeLessThan(1e-5 * whole.logs[i]!.gradNorm);
      }
      expect(Math.abs(acc.trainLoss - whole.trainLoss)).toBeLessThan(1e-5 * whole.trainLoss);
      let worst = 0;
      for (const [name, w] of whole.params) {
        const a = acc.params.get(name)!;
        for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(a[i]! - w[i]!));
      }
      expect(worst).toBeLessThan(1e-5); // two AdamW steps of lr ≤ 1e-3: float rounding only
    }
  });

  test("interrupted after a step and resumed: the same weights as a straight run", async () => {
    const cfg = { ...accumConfig(2, 2), epochs: 2 }; // 3 steps an epoch (2 + 2 + 2 batches)
    const straight = fresh();
    const recorded: number[] = [];
    const a = await trainLoop({
      model: straight,
      train: examples,
      padId: tok.padTokenId,
      config: cfg,
      onStepRecorded: (s) => void recorded.push(s),
    });
    expect(a.position.step).toBe(6);
    expect(recorded).toEqual([1, 2, 3, 4, 5, 6]); // once per optimizer step, not per batch
    const first = fresh();
    let saved: Parameters<NonNullable<Parameters<typeof trainLoop>[0]["onCheckpoint"]>>[0] | undefined;
    let steps = 0;
    let opt: AdamW | undefined;
    await trainLoop({
      model: first,
      train: examples,
      padId: tok.padTokenId,
      config: cfg,
      onStep: () => void steps++,
      shouldStop: () => steps >= 1,
      onCheckpoint: (pos, o) => {
        saved = pos;
        opt = o;
        return Promise.resolve();
      },
    });
    expect(saved).toEqual({
      step: 1,
      epoch: 0,
      batchInEpoch: 2,
      epochLossSum: saved!.epochLossSum,
      epochBatches: 1,
      tokensSeen: saved!.tokensSeen, // (tests/train_metrics_test.ts checks it)
    });
    const c = await trainLoop({
      model: first,
      train: examples,
      padId: tok.padTokenId,
      config: cfg,
      optimizer: opt,
      start: saved,
    });
    expect(c.position.step).toBe(6);
    for (const [name, t] of straight.params) expect(await first.param(name).read()).toEqual(await t.read());
  });

  test("bad values are refused", async () => {
    expect(() => checkTrainConfig({ ...config, gradAccum: 0 }, fresh())).toThrow("Invalid gradAccum: 0");
    await expect(trainMain(["--grad-accum", "0"], () => {})).rejects.toThrow("Invalid --grad-accum: 0");
    expect(() =>
      fresh().loss({ inputIds: new Int32Array([1, 2]), labels: new Int32Array([-100, 2]), B: 1, T: 2 } as never, {
        normalizer: 0.5,
      })
    ).toThrow("Invalid loss normalizer: 0.5");
  });
});

describe("a whole training run", () => {
  test("writes the HF model dir, sft_task.json, metrics and the loss curve", async () => {
    const dir = await tmp();
    try {
      await writeDataset({ task: "classification", outDir: join(dir, "data"), counts: { train: 12, val: 8, test: 8 } });
      const model = fresh();
      const lines: string[] = [];
      const r = await runTraining({
        model,
        tokenizer: tok,
        modelName: FIXTURE,
        task: "classification",
        dataDir: join(dir, "data"),
        mask: "assistant+eos",
        config: { ...config, logEvery: 2 },
        outDir: join(dir, "out"),
        runDir: join(dir, "run"),
        quiet: true,
        print: (l) => lines.push(l),
      });
      expect(r.steps).toBe(5);
      expect(r.valLosses.length).toBe(2);
      const files = await readdir(join(dir, "out"));
      for (const f of ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "vocab.txt"]) {
        expect(files).toContain(f);
      }
      const meta = JSON.parse(await readFile(join(dir, "out", "sft_task.json"), "utf8"));
      expect(meta.task).toBe("classification");
      expect(meta.labels).toHaveLength(6);
      const cfg = JSON.parse(await readFile(join(dir, "out", "config.json"), "utf8"));
      expect(cfg.eos_token_id).toBe(tok.tokenToId("<|im_end|>"));
      expect(cfg.pad_token_id).toBe(tok.padTokenId);
      const runFiles = await readdir(join(dir, "run"));
      for (const f of ["metrics.jsonl", "loss_curve.png", "loss_curve.svg", "checkpoint"]) {
        expect(runFiles).toContain(f);
      }
      const metrics = (await readFile(join(dir, "run", "metrics.jsonl"), "utf8")).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      expect(metrics.filter((m) => m.type === "train").map((m) => m.step)).toEqual([2, 4, 5]);
      expect(lines).toContain("Processed 12/12 examples");
      // the saved model loads back with the trained weights
      const back = await loadModelDir(join(dir, "out"));
      expect(back.tensors.get("transformer.ln_f.bias")!.data).toEqual(
        await model.param("transformer.ln_f.bias").read(),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  test("resuming with another batch size or accumulation is refused (the position counts batches)", async () => {
    const dir = await tmp();
    try {
      await writeDataset({ task: "classification", outDir: join(dir, "data"), counts: { train: 12, val: 4, test: 4 } });
      const opts = {
        tokenizer: tok,
        modelName: FIXTURE,
        task: "classification" as const,
        dataDir: join(dir, "data"),
        mask: "assistant+eos" as const,
        outDir: join(dir, "out"),
        runDir: join(dir, "run"),
        quiet: true,
        print: () => {},
      };
      const lines: string[] = [];
      await runTraining({ ...opts, model: fresh(), config: { ...config, maxSteps: 1 }, print: (l) => lines.push(l) });
      expect(lines).toContain("Reached MAX_STEPS=1, stopping early.");
      // the checkpoint is a model directory as well: the same weights as the saved model, its tokenizer and task
      const ckpt = join(dir, "run", "checkpoint");
      expect((await readdir(ckpt)).sort()).toEqual([
        "checkpoint_manifest.json",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "sft_task.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "trainer_state.json",
        "vocab.txt",
      ]);
      const asModel = await loadModelDir(ckpt);
      const saved = await loadModelDir(join(dir, "out"));
      expect(asModel.config).toEqual(saved.config);
      expect(asModel.tensors.get("transformer.h.0.attn.c_attn.weight")!.data).toEqual(
        saved.tensors.get("transformer.h.0.attn.c_attn.weight")!.data,
      );
      expect((await BertTokenizer.fromDir(ckpt)).tokenToId("<|im_end|>")).toBe(tok.tokenToId("<|im_end|>"));
      // 12 examples in batches of 2, 2 per step: 3 steps an epoch, 6 in the 2 epochs, so a cap of 6 is no early stop
      const full: string[] = [];
      await runTraining({
        ...opts,
        runDir: join(dir, "run-accum"),
        model: fresh(),
        config: { ...config, batchSize: 2, gradAccum: 2, maxSteps: 6 },
        print: (l) => full.push(l),
      });
      expect(full).toContain("  Batch size: 2 × 2 accumulated = 4 per optimizer step");
      expect(full).toContain("  Total steps: 6");
      expect(full.some((l) => l.startsWith("Reached MAX_STEPS"))).toBe(false);
      await expect(
        runTraining({ ...opts, model: fresh(), config: { ...config, batchSize: 2, gradAccum: 2 }, resume: true }),
      ).rejects.toThrow(
        "it was trained with --batch-size 4 --grad-accum 1, this run asks --batch-size 2 --grad-accum 2",
      );
      const r = await runTraining({ ...opts, model: fresh(), config: { ...config, maxSteps: 2 }, resume: true });
      expect(r.steps).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("your own data", () => {
  test("training needs only instruction and response; all-empty answers are named as such", async () => {
    const dir = await tmp();
    try {
      const data = join(dir, "data");
      await mkdir(data);
      const rows = (n: number, answer: (i: number) => string) =>
        Array.from({ length: n }, (_, i) => JSON.stringify({ instruction: `第${i}条：好吗？`, response: answer(i) }))
          .join("\n") + "\n";
      await writeFile(join(data, "gpt2_sft_train.jsonl"), rows(8, (i) => (i % 2 ? "好评" : "差评")));
      await writeFile(join(data, "gpt2_sft_val.jsonl"), rows(2, () => "好评"));
      const opts = {
        tokenizer: tok,
        modelName: FIXTURE,
        task: "classification" as const,
        labels: ["好评", "差评"],
        dataDir: data,
        mask: "assistant+eos" as const,
        outDir: join(dir, "out"),
        runDir: join(dir, "run"),
        quiet: true,
        print: () => {},
      };
      const r = await runTraining({ ...opts, model: fresh(), config: { ...config, maxSteps: 1 } });
      expect(r.steps).toBe(1);
      await writeFile(join(data, "gpt2_sft_train.jsonl"), rows(8, () => ""));
      await expect(runTraining({ ...opts, model: fresh(), config, overwrite: true })).rejects.toThrow(
        `Cannot train: every answer in ${join(data, "gpt2_sft_train.jsonl")} is empty`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("bad settings fail before training", () => {
  test("max length above the model's positions", () => {
    expect(() => checkTrainConfig({ ...config, maxLength: 300 }, fresh())).toThrow(
      "Invalid --max-length 300: the model has only 256 positions",
    );
  });
  test("a label set that never occurs in the data", () => {
    expect(() => checkLabels(records, ["甲", "乙"], "train.jsonl")).toThrow("none of the labels (甲, 乙) occurs");
    const warnings: string[] = [];
    checkLabels(records, ["延迟发货", "甲"], "train.jsonl", (m) => warnings.push(m));
    expect(warnings[0]).toContain("label 甲 never occurs");
  });
  test("an unknown task", async () => {
    await expect(loadTaskRecords("summarise" as never, "data", "train")).rejects.toThrow('Unknown task: "summarise"');
  });
  test("bad flags name the flag", async () => {
    await expect(trainMain(["--batch-size", "0"], () => {})).rejects.toThrow("Invalid --batch-size: 0");
    await expect(trainMain(["--task", "chat"], () => {})).rejects.toThrow('Invalid --task: "chat"');
    await expect(trainMain(["--mask", "all"], () => {})).rejects.toThrow('Invalid --mask: "all"');
    await expect(trainMain(["--lr", "fast"], () => {})).rejects.toThrow('Invalid --lr: "fast" is not a number');
    await expect(trainMain(["--lr", "0x10"], () => {})).rejects.toThrow('Invalid --lr: "0x10" is not a decimal number');
    await expect(trainMain(["--lrr", "1"], () => {})).rejects.toThrow(
      "Unknown flag --lrr (did you mean --lr?); --help lists the flags",
    );
    await expect(trainMain(["--chekpoint-every", "1"], () => {})).rejects.toThrow("did you mean --checkpoint-every?");
    await expect(trainMain(["--zzz"], () => {})).rejects.toThrow(/^Unknown flag --zzz; --help lists the flags$/);
    await expect(trainMain(["--lr"], () => {})).rejects.toThrow("argument missing; --help lists the flags");
    for (const [text, v] of [["1e-3", 0.001], [".5", 0.5], ["+2", 2], ["3.", 3], [" 7 ", 7]] as const) {
      expect(numberFlag("lr", text, 0)).toBe(v);
    }
    for (const bad of ["0b1", "0o7", "1_000", "Infinity", "1e"]) expect(() => numberFlag("lr", bad, 0)).toThrow(bad);
    await expect(trainMain(["--seed", "9007199254740992"], () => {})).rejects.toThrow(
      "Invalid --seed: 9007199254740992 (expected ≤ 9007199254740991, 2^53 − 1)",
    );
  });
  test("a model that is neither a directory nor reachable", async () => {
    const dir = await tmp();
    try {
      const env = { HF_HUB_OFFLINE: "1", HF_HUB_CACHE: dir };
      const old = { ...process.env };
      Object.assign(process.env, env);
      try {
        await expect(trainMain(["--model", "nobody/nothing", "--backend", "cpu"], () => {})).rejects.toThrow(
          "deno task demo",
        );
      } finally {
        for (const k of Object.keys(env)) {
          if (old[k] === undefined) delete process.env[k];
          else process.env[k] = old[k];
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
