/**
 * Time from Ctrl-C to exit at the real shape: `deno run -A bench/interrupt.ts [--backend cpu] [--trials 3]`.
 *
 * Writes a model directory of the notebook's shape (12 layers, n_embd 768, 21191 rows of wte: ~102 M
 * parameters, random weights, the demo's vocabulary as its tokenizer) and the demo's data, then runs
 * `train.ts` on it in a child process at the notebook's batch (4) and length (256). After the second step
 * line it sends SIGINT and measures until the process exits: the rest of the running step plus the
 * checkpoint (parameters, AdamW moments, tokenizer: ~1.2 GB, fsynced). Each trial resumes the previous one.
 * Prints each trial and the median with min–max.
 * @module
 */

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { CpuBackend } from "../src/backend/cpu.ts";
import { benchConfig } from "./bench.ts";
import { scriptArgv } from "../src/testing/child.ts";
import { readSftRecords } from "../src/data/jsonl.ts";
import { datasetFileNames, writeDataset } from "../src/data/synth.ts";
import { vocabFromRecords } from "../src/demo/tiny.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { saveSftModel } from "../src/train/run.ts";
import { parseFlags } from "../src/cli/args.ts";
import { backendSettings } from "../src/env.ts";

const { values: v } = parseFlags({
  args: process.argv.slice(2),
  options: {
    backend: { type: "string", default: "cpu" },
    trials: { type: "string", default: "3" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (v.help) {
  console.log("Usage: deno run -A bench/interrupt.ts [--backend cpu|webgpu] [--trials N] [--keep]");
  process.exit(0);
}
const trials = Number(v.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`Invalid --trials: ${v.trials}`);

const dir = await mkdtemp(join(tmpdir(), "sft-interrupt-"));
const data = join(dir, "data"), modelDir = join(dir, "model");
await writeDataset({ task: "classification", outDir: data, counts: { train: 400, val: 8, test: 8 } });
const records = await readSftRecords(join(data, datasetFileNames("classification").train));
const tokenizer = BertTokenizer.fromVocab(vocabFromRecords(records), { doLowerCase: false, source: "demo vocabulary" });
tokenizer.prepareForSft();
const config = benchConfig(12, 0.1); // the real shape, dropout 0.1 as the base model

const env = backendSettings();
const be = new CpuBackend({ ...env.cpu, profile: env.profile });
const model = GPT2.random(be, config, 1);
await saveSftModel(modelDir, { model, tokenizer, extraFiles: tokenizer.saveFiles() });
console.log(`Real-shape model (${model.numParams.toLocaleString("en-US")} parameters, random) in ${modelDir}`);
model.dispose();

interface Trial {
  /** SIGINT → exit, and its parts: → the handler's message (the rest of the step), → "Stopped" (the save). */
  ms: number;
  stepMs: number;
  saveMs: number;
  step: string;
  out: string;
}

function runOnce(args: string[]): Promise<Trial> {
  const root = new URL("..", import.meta.url).pathname;
  const argv = scriptArgv("train.ts", args);
  const child = spawn(process.execPath, argv, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let out = "", t0 = 0, steps = 0, tHandler = 0, tStopped = 0;
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      if (t0 && !tHandler && out.includes("Interrupted: ")) tHandler = performance.now();
      if (t0 && !tStopped && out.includes("Stopped at step")) tStopped = performance.now();
      const n = (out.match(/^Step +\d+\//gm) ?? []).length;
      if (n >= 2 && steps < 2 && t0 === 0) {
        steps = n;
        t0 = performance.now();
        process.kill(child.pid!, "SIGINT");
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", () => {
      if (t0 === 0) reject(new Error(`train.ts ended before two steps:\n${out}`));
      else {
        resolve({
          ms: performance.now() - t0,
          stepMs: tHandler - t0,
          saveMs: tStopped - tHandler,
          step: /Stopped at step (\d+)/.exec(out)?.[1] ?? "?",
          out,
        });
      }
    });
  });
}

const common = ["--backend", v.backend!, "--log-every", "1", "--checkpoint-every", "0"];
const times: number[] = [];
try {
  for (let i = 0; i < trials; i++) {
    const args = i === 0
      ? [
        "--model",
        modelDir,
        "--data-dir",
        data,
        "--out",
        join(dir, "out"),
        "--run-dir",
        join(dir, "run"),
        "--max-length",
        "256",
        "--pad",
        "max_length",
        "--lr",
        "5e-5",
        ...common,
      ]
      : ["--resume", "--run-dir", join(dir, "run"), ...common];
    const r = await runOnce(args);
    if (!/checkpoint saved in/.test(r.out)) throw new Error(`no checkpoint saved:\n${r.out}`);
    times.push(r.ms);
    console.log(
      `trial ${i + 1}: Ctrl-C → exit ${(r.ms / 1000).toFixed(2)} s (rest of the step ${
        (r.stepMs / 1000).toFixed(2)
      } s, checkpoint ${(r.saveMs / 1000).toFixed(2)} s; stopped at step ${r.step})`,
    );
  }
} finally {
  if (!v.keep) await rm(dir, { recursive: true, force: true });
}
const sorted = [...times].sort((a, b) => a - b);
const s = (ms: number) => (ms / 1000).toFixed(2);
console.log(
  `Ctrl-C → exit, ${v.backend}: median ${s(sorted[Math.floor(sorted.length / 2)]!)} s ` +
    `(min ${s(sorted[0]!)}, max ${s(sorted[sorted.length - 1]!)}, ${trials} trials)`,
);
