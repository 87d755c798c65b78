// Training under faults, on the CPU backend with the fixture's tiny model: a full disk, a diverged run, a
// second run on the same directory, directories that would be lost or cannot be written, a save cut short at
// any point, resumes that contradict the checkpoint or extend it, torn metrics. The signal tests (Ctrl-C
// once and twice, SIGKILL during saves) run the real command line in a child process of this runtime.
import { describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { appendFile, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import process from "node:process";
import { CpuBackend } from "../src/backend/cpu.ts";
import { writeDataset } from "../src/data/synth.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { AdamW } from "../src/train/adamw.ts";
import {
  CHECKPOINT_MANIFEST,
  type CheckpointFs,
  findCheckpoint,
  loadCheckpoint,
  NonFiniteCheckpointError,
  saveCheckpoint,
  validateCheckpoint,
} from "../src/train/checkpoint.ts";
import { repairMetrics } from "../src/train/metrics.ts";
import { acquireRunLock } from "../src/train/run_lock.ts";
import { checkOutputDirs, runTraining, type TrainRunOptions } from "../src/train/run.ts";
import { NOTEBOOK_TRAIN_CONFIG, type TrainConfig } from "../src/train/trainer.ts";
import { trainMain } from "../src/cli/train.ts";
import { webgpuForTests } from "../src/testing/backends.ts";
import { scriptArgv } from "../src/testing/child.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const be = new CpuBackend();
const loaded = await loadModelDir(FIXTURE);
const tok = await BertTokenizer.fromDir(FIXTURE);
const fresh = () => GPT2.fromTensors(be, loaded.config, loaded.tensors);
const config: TrainConfig = {
  ...NOTEBOOK_TRAIN_CONFIG,
  batchSize: 4,
  epochs: 3,
  maxSteps: 6,
  lr: 1e-3,
  warmupSteps: 2,
  logEvery: 2,
  maxLength: 160,
};
const position = (step: number) => ({ step, epoch: 0, batchInEpoch: step, epochLossSum: 0, epochBatches: step });

async function tmp(): Promise<string> {
  return await mkdtemp(join(tmpdir(), "sft-faults-"));
}

/** Run `fn` in a new temporary directory, removed afterwards whatever happens. */
async function inTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tmp();
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A model and an optimizer that has taken one step, ready to be checkpointed. */
function trainedPair(): { model: GPT2; optimizer: AdamW } {
  const model = fresh();
  const optimizer = new AdamW(be, model.params, { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1 }, model);
  return { model, optimizer };
}

async function save(dir: string, step: number, fs?: CheckpointFs, pair = trainedPair()): Promise<void> {
  await saveCheckpoint(dir, { ...pair, position: position(step), config, run: {}, fs });
}

async function stepOf(dir: string): Promise<number | undefined> {
  const found = await findCheckpoint(dir);
  return found === undefined ? undefined : (await loadCheckpoint(found)).state.position.step;
}

describe("checkpoint files", () => {
  test("the manifest is written last; a copy without it, or with a file cut short, is not a checkpoint", async () => {
    await inTmp(async (dir) => {
      const ck = join(dir, "checkpoint");
      await save(ck, 3);
      expect(await readdir(ck)).toContain(CHECKPOINT_MANIFEST);
      // a save killed before its manifest: a newer step, but incomplete
      await cp(ck, `${ck}.tmp-1-aaaa`, { recursive: true });
      const torn = JSON.parse(await readFile(join(`${ck}.tmp-1-aaaa`, "trainer_state.json"), "utf8"));
      torn.position.step = 9;
      await writeFile(join(`${ck}.tmp-1-aaaa`, "trainer_state.json"), JSON.stringify(torn));
      await rm(join(`${ck}.tmp-1-aaaa`, CHECKPOINT_MANIFEST));
      // a save killed while writing a file: the manifest's size does not match
      await cp(ck, `${ck}.tmp-2-bbbb`, { recursive: true });
      const m = JSON.parse(await readFile(join(`${ck}.tmp-2-bbbb`, CHECKPOINT_MANIFEST), "utf8"));
      m.step = 10;
      await writeFile(join(`${ck}.tmp-2-bbbb`, CHECKPOINT_MANIFEST), JSON.stringify(m));
      const bytes = await readFile(join(`${ck}.tmp-2-bbbb`, "optimizer.safetensors"));
      await writeFile(join(`${ck}.tmp-2-bbbb`, "optimizer.safetensors"), bytes.subarray(0, bytes.length - 8));
      expect(await findCheckpoint(ck)).toBe(ck);
      expect(await stepOf(ck)).toBe(3);
      // the next save removes both stale temporaries
      await save(ck, 4);
      expect((await readdir(dir)).sort()).toEqual(["checkpoint"]);
      expect(await stepOf(ck)).toBe(4);
    });
  });

  test("resumed from checkpoint.old, a save that fails or completes leaves a complete checkpoint", async () => {
    await inTmp(async (dir) => {
      const ck = join(dir, "checkpoint");
      await save(ck, 5);
      // a kill between the two renames of a save: only <dir>.old is left
      await rename(ck, `${ck}.old`);
      expect(await findCheckpoint(ck)).toBe(`${ck}.old`);
      // the next save is cut short at each of its files in turn: the .old one stays findable every time
      for (let fail = 0; fail < 4; fail++) {
        let n = 0;
        const fs: CheckpointFs = {
          async writeFileSynced(path, data) {
            if (n++ === fail) throw Object.assign(new Error("injected"), { code: "EIO" });
            await writeFile(path, data, { flag: "wx" });
          },
        };
        await expect(save(ck, 6, fs)).rejects.toThrow("the previous checkpoint is kept");
        expect(await stepOf(ck)).toBe(5);
      }
      await save(ck, 6);
      expect(await stepOf(ck)).toBe(6);
      expect(await findCheckpoint(ck)).toBe(ck);
      expect((await readdir(dir)).sort()).toEqual(["checkpoint"]);
    });
  });

  test("a full disk (ENOSPC) or a read-only one (EROFS) names the path and removes the partial copy", async () => {
    await inTmp(async (dir) => {
      const ck = join(dir, "checkpoint");
      await save(ck, 1);
      for (
        const [code, words] of [["ENOSPC", "no space left on the device"], ["EROFS", "the file system is read-only"]]
      ) {
        const fs: CheckpointFs = {
          async writeFileSynced(path, data) {
            if (path.endsWith("optimizer.safetensors")) throw Object.assign(new Error(code!), { code });
            await writeFile(path, data, { flag: "wx" });
          },
        };
        const err = await save(ck, 2, fs).then(() => undefined, (e: Error) => e);
        expect(err?.message).toContain(`optimizer.safetensors: ${words} (${code})`);
        expect(err?.message).toContain(`${ck}.tmp-`);
        expect((await readdir(dir)).sort()).toEqual(["checkpoint"]);
        expect(await stepOf(ck)).toBe(1);
      }
    });
  });

  test("NaN parameters or moments are never written", async () => {
    await inTmp(async (dir) => {
      const pair = trainedPair();
      const w = pair.model.param("transformer.h.0.mlp.c_fc.weight");
      const data = await w.read();
      data[7] = NaN;
      be.write(w.buf, data);
      const err = await save(join(dir, "checkpoint"), 1, undefined, pair).then(() => undefined, (e) => e);
      expect(err).toBeInstanceOf(NonFiniteCheckpointError);
      expect((err as Error).message).toContain("transformer.h.0.mlp.c_fc.weight[7] is NaN");
      expect(await readdir(dir)).toEqual([]);
    });
  });

  test("a file changed after the save, a missing or misshapen tensor: errors name the file and tensor", async () => {
    await inTmp(async (dir) => {
      const ck = join(dir, "checkpoint");
      await save(ck, 1);
      const model = fresh();
      const good = await loadCheckpoint(ck);
      validateCheckpoint(ck, good, model);
      const params = new Map(good.params);
      params.delete("transformer.wpe.weight");
      expect(() => validateCheckpoint(ck, { ...good, params }, model)).toThrow(
        `Cannot resume from ${ck}: model.safetensors has no transformer.wpe.weight`,
      );
      const wte = good.params.get("transformer.wte.weight")!;
      params.set("transformer.wpe.weight", { shape: [3, 4], data: new Float32Array(12) });
      expect(() => validateCheckpoint(ck, { ...good, params }, model)).toThrow(
        `transformer.wpe.weight has shape [3,4] in model.safetensors, the model [${
          model.param("transformer.wpe.weight").shape
        }]`,
      );
      const m = new Map(good.optimizer.m);
      m.set("transformer.wte.weight", new Float32Array(5));
      expect(() => validateCheckpoint(ck, { ...good, optimizer: { ...good.optimizer, step: 1, m } }, model)).toThrow(
        `m.transformer.wte.weight has 5 elements, the parameter ${wte.data.length}`,
      );
      // one byte flipped in place (same size): the sha256 in the manifest tells
      const path = join(ck, "model.safetensors");
      const bytes = new Uint8Array(await readFile(path));
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
      await writeFile(path, bytes);
      await expect(loadCheckpoint(ck)).rejects.toThrow(`${path}: its sha256 differs from ${CHECKPOINT_MANIFEST}`);
    });
  });

  test("a torn last metrics line and lines after the checkpoint's step are dropped", async () => {
    await inTmp(async (dir) => {
      const path = join(dir, "metrics.jsonl");
      await writeFile(path, ['{"type":"train","step":2}', '{"type":"train","step":4}', '{"type":"tr'].join("\n"));
      expect(await repairMetrics(path, 2)).toEqual({ torn: true, later: 1 });
      expect(await readFile(path, "utf8")).toBe('{"type":"train","step":2}\n');
      expect(await repairMetrics(path, 2)).toEqual({ torn: false, later: 0 });
    });
  });
});

describe("run directory lock", () => {
  test("a second run on a locked run dir is refused naming the PID; a dead holder's lock is taken over", async () => {
    const dir = await tmp();
    const sleeper = spawn("sleep", ["30"]);
    try {
      await writeFile(
        join(dir, ".lock"),
        JSON.stringify({ pid: sleeper.pid, host: (await import("node:os")).hostname() }),
      );
      expect(() => acquireRunLock(dir)).toThrow(`another training run (PID ${sleeper.pid}`);
      sleeper.kill("SIGKILL");
      await new Promise((r) => sleeper.once("exit", r));
      const notices: string[] = [];
      const lock = acquireRunLock(dir, (m) => notices.push(m));
      expect(notices[0]).toContain(`Removed a stale lock of PID ${sleeper.pid}`);
      expect(() => acquireRunLock(dir)).toThrow("this process already trains in it");
      lock.release();
      expect(await readdir(dir)).toEqual([]);
    } finally {
      sleeper.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A data dir of the notebook's classification task, generated. */
async function dataDir(dir: string, train = 16): Promise<string> {
  const data = join(dir, "data");
  await writeDataset({ task: "classification", outDir: data, counts: { train, val: 4, test: 4 } });
  return data;
}

function runOpts(dir: string, data: string, over: Partial<TrainRunOptions> = {}): TrainRunOptions {
  return {
    model: fresh(),
    tokenizer: tok,
    modelName: FIXTURE,
    task: "classification",
    dataDir: data,
    mask: "assistant+eos",
    config,
    outDir: join(dir, "out"),
    runDir: join(dir, "run"),
    quiet: true,
    print: () => {},
    ...over,
  };
}

describe("directories checked before training", () => {
  test("--run-dir inside --out, --out on the run's own files, a foreign or unwritable --out: refused", async () => {
    await inTmp(async (dir) => {
      await expect(checkOutputDirs(join(dir, "m"), join(dir, "m", "run"))).rejects.toThrow(
        "the run directory is inside --out",
      );
      await expect(checkOutputDirs(join(dir, "same"), join(dir, "same"))).rejects.toThrow("choose separate");
      await expect(checkOutputDirs(join(dir, "r", "checkpoint"), join(dir, "r"))).rejects.toThrow(
        "--out is where the run keeps its checkpoint",
      );
      await checkOutputDirs(join(dir, "r", "model"), join(dir, "r")); // beside the run's files, as the demo
      await mkdir(join(dir, "photos"));
      await writeFile(join(dir, "photos", "cat.jpg"), "x");
      await expect(checkOutputDirs(join(dir, "photos"), join(dir, "r"))).rejects.toThrow(
        `Invalid --out ${join(dir, "photos")}: it exists and is not a model directory this tool wrote`,
      );
      await writeFile(join(dir, "file"), "x");
      await expect(checkOutputDirs(join(dir, "file"), join(dir, "r"))).rejects.toThrow("is not a directory");
      await expect(checkOutputDirs(join(dir, "file", "out"), join(dir, "r"))).rejects.toThrow(
        `Invalid --out ${join(dir, "file", "out")}: a part of its path is a file, not a directory`,
      );
    });
  });

  test("a fresh run on a checkpoint is refused; --resume without one fails before the data is read", async () => {
    await inTmp(async (dir) => {
      await expect(runTraining(runOpts(dir, join(dir, "no-data"), { resume: true }))).rejects.toThrow(
        `Cannot resume: no complete checkpoint in ${join(dir, "run", "checkpoint")}`,
      );
      // the command line says so before it loads a model (here the hub's default, which is not there offline)
      const printed: string[] = [];
      await expect(
        trainMain(["--resume", "--run-dir", join(dir, "run"), "--offline", "--backend", "cpu"], (l) => printed.push(l)),
      ).rejects.toThrow(`Cannot resume: no complete checkpoint in ${join(dir, "run", "checkpoint")}`);
      expect(printed).toEqual([]);
      const data = await dataDir(dir);
      await runTraining(runOpts(dir, data, { config: { ...config, maxSteps: 1 } }));
      await expect(runTraining(runOpts(dir, data))).rejects.toThrow(
        `Cannot start a new run in ${join(dir, "run")}: it holds a checkpoint`,
      );
      const lines: string[] = [];
      const r = await runTraining(runOpts(dir, data, { overwrite: true, print: (l) => lines.push(l) }));
      expect(lines).toContain(`Removed the checkpoint in ${join(dir, "run", "checkpoint")} (--overwrite)`);
      expect(r.steps).toBe(6);
    });
  }, 60_000);
});

describe("divergence", () => {
  test("--lr 1e30: no NaN checkpoint is written, and the message says there is none", async () => {
    await inTmp(async (dir) => {
      const data = await dataDir(dir);
      const cfg = { ...config, lr: 1e30, warmupSteps: 0, maxGradNorm: 1e30, logEvery: 20, maxSteps: 40 };
      const err = await runTraining(runOpts(dir, data, { config: cfg, checkpointEvery: 5 })).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/^Training stopped: the loss became (NaN|-?Infinity) at step [1-5]; /);
      expect(err?.message).toContain("no checkpoint was written before it");
      expect(await findCheckpoint(join(dir, "run", "checkpoint"))).toBeUndefined();
    });
  }, 60_000);
});

describe("resume", () => {
  test("2 steps, then resumed to 6 with --max-steps alone: the same model, bit for bit, as 6 straight", async () => {
    await inTmp(async (dir) => {
      const data = await dataDir(dir);
      await runTraining(runOpts(dir, data, { outDir: join(dir, "straight"), runDir: join(dir, "run-straight") }));
      // stopped by the step cap in the middle of an epoch (4 batches an epoch), then extended
      await runTraining(runOpts(dir, data, { config: { ...config, maxSteps: 2 } }));
      const lines: string[] = [];
      const r = await runTraining(runOpts(dir, data, { resume: true, print: (l) => lines.push(l) }));
      expect(lines).toContain(`Resumed from ${join(dir, "run", "checkpoint")} at step 2 (epoch 1, batch 2)`);
      expect(r.steps).toBe(6);
      const a = await readFile(join(dir, "straight", "model.safetensors"));
      const b = await readFile(join(dir, "out", "model.safetensors"));
      expect(b.equals(a)).toBe(true);
      // the metrics hold each logged step once
      const steps = (await readFile(join(dir, "run", "metrics.jsonl"), "utf8")).trim().split("\n")
        .map((l) => JSON.parse(l)).filter((o) => o.type === "train").map((o) => o.step);
      expect(steps).toEqual([2, 4, 6]);
      await expect(runTraining(runOpts(dir, data, { resume: true }))).rejects.toThrow(
        "Nothing to resume: ",
      );
    });
  }, 60_000);

  test("a contradicting setting or changed data is refused naming both values", async () => {
    await inTmp(async (dir) => {
      const data = await dataDir(dir);
      await runTraining(runOpts(dir, data, { config: { ...config, maxSteps: 2 } }));
      await expect(runTraining(runOpts(dir, data, { resume: true, config: { ...config, lr: 2e-3 } }))).rejects.toThrow(
        "--lr 0.002 here, --lr 0.001 in the checkpoint",
      );
      await expect(runTraining(runOpts(dir, data, { resume: true, mask: "assistant" }))).rejects.toThrow(
        "--mask assistant here, --mask assistant+eos in the checkpoint",
      );
      await expect(runTraining(runOpts(dir, data, { resume: true, outDir: join(dir, "elsewhere") }))).rejects.toThrow(
        `--out ${join(dir, "elsewhere")} here, --out ${join(dir, "out")} in the checkpoint`,
      );
      await appendFile(join(data, "gpt2_sft_train.jsonl"), await readFile(join(data, "gpt2_sft_train.jsonl"), "utf8"));
      await expect(runTraining(runOpts(dir, data, { resume: true }))).rejects.toThrow(
        `the training file ${join(data, "gpt2_sft_train.jsonl")} changed since the checkpoint`,
      );
    });
  }, 60_000);

  test("the command line: --resume --run-dir alone takes every setting from the checkpoint", async () => {
    await inTmp(async (dir) => {
      const data = await dataDir(dir);
      const run = join(dir, "run"), out = join(dir, "out");
      const first = [
        "--model",
        relative(process.cwd(), FIXTURE), // a relative path: recorded absolute
        "--backend",
        "cpu",
        "--data-dir",
        data,
        "--out",
        out,
        "--run-dir",
        run,
        "--lr",
        "0.002",
        "--max-steps",
        "2",
        "--max-length",
        "160",
        "--log-every",
        "1",
        "--no-dropout",
        "--quiet",
      ];
      expect(await trainMain(first, () => {})).toBe(0);
      // a torn line left by a crash, and a line of a step after the checkpoint
      await appendFile(join(run, "metrics.jsonl"), '{"type":"train","step":3,"loss":1}\n{"type":"tr');
      const lines: string[] = [];
      const code = await trainMain(["--resume", "--run-dir", run, "--max-steps", "3", "--quiet", "--backend", "cpu"], (
        l,
      ) => lines.push(l));
      expect(code).toBe(0);
      expect(lines).toContain(`Resumed from ${join(run, "checkpoint")} at step 2 (epoch 1, batch 2)`);
      expect(lines.some((l) => l.startsWith("warning: dropped the last line of"))).toBe(true);
      expect(lines).toContain("Dropped 1 metrics line(s) of steps after the checkpoint's 2");
      expect(lines).toContain("  Learning rate: 0.002");
      expect(lines).toContain(`Saved SFT model to ${out}`);
      // the base model is recorded as an absolute path, so eval finds it from any directory
      expect(JSON.parse(await readFile(join(out, "sft_task.json"), "utf8")).model_name).toBe(FIXTURE);
      const state = JSON.parse(await readFile(join(run, "checkpoint", "trainer_state.json"), "utf8"));
      expect(state.position.step).toBe(3);
      expect(state.config.dropout).toBe(false);
      expect(state.run.model).toBe(FIXTURE);
      const steps = (await readFile(join(run, "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l))
        .filter((o) => o.type === "train").map((o) => o.step);
      expect(steps).toEqual([1, 2, 3]);
      await expect(
        trainMain(["--resume", "--run-dir", run, "--max-steps", "4", "--lr", "0.1", "--backend", "cpu"], () => {}),
      ).rejects
        .toThrow("--lr 0.1 here, --lr 0.002 in the checkpoint");
    });
  }, 60_000);
});

// ---- signals, against the real command line in a child process of this runtime (deno or bun)

interface Child {
  out: () => string;
  exited: Promise<number | null>;
  kill: (sig: NodeJS.Signals) => void;
  waitFor: (re: RegExp, ms?: number) => Promise<void>;
}

function startTrain(args: string[], script = "train.ts"): Child {
  const argv = scriptArgv(script, args);
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout.on("data", (d) => text += d);
  child.stderr.on("data", (d) => text += d);
  // Deno's node:child_process reports an exit status of 128 + n as the signal n: 130 reads as SIGINT there (the
  // output tells a handled Ctrl-C from a process the signal killed)
  const exited = new Promise<number | null>((r) =>
    child.on("exit", (code, sig) => r(code ?? (sig === "SIGINT" ? 130 : sig ? -1 : null)))
  );
  return {
    out: () => text,
    exited,
    // process.kill, not child.kill: Deno's ChildProcess sends only the first of several kill() calls
    kill: (sig) => process.kill(child.pid!, sig),
    async waitFor(re, ms = 30_000) {
      const t0 = Date.now();
      while (!re.test(text)) {
        if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${re}; output:\n${text}`);
        if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${re}; output:\n${text}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

const gpuAvailable = await webgpuForTests("train_faults_test");

describe("Ctrl-C and SIGKILL on the command line", () => {
  const common = (dir: string, data: string) => [
    "--model",
    FIXTURE,
    "--backend",
    "cpu",
    "--data-dir",
    data,
    "--out",
    join(dir, "out"),
    "--run-dir",
    join(dir, "run"),
    "--max-length",
    "160",
    "--epochs",
    "1000",
    "--max-steps",
    "100000",
    "--log-every",
    "1",
  ];

  test(
    "Ctrl-C with --checkpoint-every 0 stops within a step and saves; twice exits at once, the last one intact",
    async () => {
      const dir = await tmp();
      try {
        const data = await dataDir(dir);
        const a = startTrain([...common(dir, data), "--checkpoint-every", "0"]);
        await a.waitFor(/Step +3\//);
        const t0 = performance.now();
        a.kill("SIGINT");
        expect(await a.exited).toBe(130);
        const ms = performance.now() - t0;
        expect(ms).toBeLessThan(10_000);
        expect(a.out()).toContain("Interrupted: finishing this step and saving a checkpoint");
        expect(a.out()).toMatch(/Stopped at step \d+; checkpoint saved in /);
        const ck = join(dir, "run", "checkpoint");
        const step = (await stepOf(ck))!;
        expect(step).toBeGreaterThanOrEqual(3);
        expect(a.out()).toContain(`Stopped at step ${step}`);
        expect(await readdir(join(dir, "run"))).not.toContain(".lock");

        // resumed with saves slowed down (200 ms a file); Ctrl-C, then Ctrl-C again during the save it asked for
        const b = startTrain(
          ["--resume", "--run-dir", join(dir, "run"), "--backend", "cpu"],
          "tests/helpers/train_slow_save.ts",
        );
        await b.waitFor(new RegExp(`Step +${step + 2}/`));
        b.kill("SIGINT");
        await b.waitFor(/Interrupted: /);
        await new Promise((r) => setTimeout(r, 300));
        const t1 = performance.now();
        b.kill("SIGINT");
        expect(await b.exited).toBe(130);
        expect(performance.now() - t1).toBeLessThan(2_000);
        expect(b.out()).toContain(
          `Quit while saving: the checkpoint being written is dropped; the one of step ${step} is intact (${ck})`,
        );
        expect(await stepOf(ck)).toBe(step);
        expect(await readdir(join(dir, "run"))).not.toContain(".lock");
        // the next resume starts from it and removes the dropped temporary when it saves
        const c = startTrain([
          "--resume",
          "--run-dir",
          join(dir, "run"),
          "--backend",
          "cpu",
          "--max-steps",
          String(step + 1),
        ]);
        expect(await c.exited).toBe(0);
        expect(c.out()).toContain(`Resumed from ${ck} at step ${step}`);
        expect((await readdir(join(dir, "run"))).filter((f) => f.startsWith("checkpoint"))).toEqual(["checkpoint"]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );

  test.skipIf(!gpuAvailable)("on WebGPU too: Ctrl-C stops within a step and saves the checkpoint", async () => {
    await inTmp(async (dir) => {
      const data = await dataDir(dir);
      const args = common(dir, data).map((a) => a === "cpu" ? "webgpu" : a);
      const a = startTrain([...args, "--checkpoint-every", "0"]);
      await a.waitFor(/Step +2\//, 90_000);
      a.kill("SIGINT");
      expect(await a.exited).toBe(130);
      expect(a.out()).toMatch(/Stopped at step \d+; checkpoint saved in /);
      expect(await stepOf(join(dir, "run", "checkpoint"))).toBeGreaterThanOrEqual(2);
    });
  }, 120_000);

  test("SIGKILL at any moment of a run that saves every step leaves a complete checkpoint to resume", async () => {
    await inTmp(async (dir) => {
      const data = await dataDir(dir);
      const ck = join(dir, "run", "checkpoint");
      let last = 0;
      for (let i = 0; i < 4; i++) {
        const args = i === 0
          ? [...common(dir, data), "--checkpoint-every", "1"]
          : ["--resume", "--run-dir", join(dir, "run"), "--backend", "cpu"];
        const c = startTrain(args);
        await c.waitFor(new RegExp(`Step +${last + 2}/`));
        // a different moment each time: inside a step, between the files of a save, between its renames
        await new Promise((r) => setTimeout(r, 7 * i));
        c.kill("SIGKILL");
        await c.exited;
        const step = await stepOf(ck);
        expect(step).toBeGreaterThanOrEqual(last + 1);
        last = step!;
      }
      // the stale lock of the killed run is taken over, and the run goes on
      const d = startTrain([
        "--resume",
        "--run-dir",
        join(dir, "run"),
        "--backend",
        "cpu",
        "--max-steps",
        String(last + 2),
      ]);
      expect(await d.exited).toBe(0);
      expect(d.out()).toContain("Removed a stale lock of PID");
      expect(d.out()).toContain(`Resumed from `);
      expect(await stepOf(ck)).toBe(last + 2);
    });
  }, 120_000);
});
