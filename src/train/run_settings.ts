/**
 * A run's settings as a checkpoint records them, and the check that a resumed run is the same run: the
 * model source, the data files (with their sha256), the task, the mask, `--out` and every setting of the
 * optimisation and the data order. Only what can change without changing what the steps compute may differ
 * on resume: `--max-steps`, `--epochs`, `--log-every`, `--checkpoint-every`, `--eval-every`, `--backend`,
 * `--quiet`.
 * @module
 */

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { TrainConfig } from "./trainer.ts";

/** What the checkpoint's `run` field holds besides the {@link TrainConfig}. */
export interface RunSettings {
  /** Hub id (`id` or `id@revision`) or the absolute path of the base model's directory. */
  model: string;
  task: string;
  plain: boolean;
  labels: string[] | null;
  /** Absolute path. */
  dataDir: string;
  limitTrain: number | null;
  limitVal: number | null;
  mask: string;
  /** Your own chat data (`--train-file`): its `--format`, `--train-on` and `--val-split`. */
  format?: string;
  trainOn?: string;
  valSplit?: number;
  /** Absolute path of the saved model. */
  out: string;
  /** The files read, with their sha256 (the data order is a function of their contents). */
  dataFiles: { train: DataFile; val: DataFile | null };
  /** `--checkpoint-every` and `--eval-every`: not compared on resume, only the defaults of a resumed run. */
  checkpointEvery?: number;
  evalEvery?: number;
}

/** A data file and the sha256 of its bytes. */
export interface DataFile {
  path: string;
  sha256: string;
}

/** The sha256 of a file's bytes. */
export async function fileSha256(path: string): Promise<string> {
  return createHash("sha256").update(new Uint8Array(await readFile(path))).digest("hex");
}

/** The flag of each setting that a resumed run must keep, for the messages. */
const CONFIG_FLAGS: Partial<Record<keyof TrainConfig, string>> = {
  batchSize: "--batch-size",
  gradAccum: "--grad-accum",
  lr: "--lr",
  warmupSteps: "--warmup-steps",
  warmupStartFactor: "the warm-up start factor",
  lrDecay: "--lr-schedule",
  weightDecay: "--weight-decay",
  maxGradNorm: "--grad-clip",
  seed: "--seed",
  pad: "--pad",
  maxLength: "--max-length",
  dropout: "--no-dropout",
  lora: "--lora",
  packing: "--packing",
};
const RUN_FLAGS: Partial<Record<keyof RunSettings, string>> = {
  model: "--model",
  task: "--task",
  plain: "--plain",
  labels: "--labels",
  dataDir: "--data-dir",
  limitTrain: "--limit-train",
  limitVal: "--limit-val",
  mask: "--mask",
  format: "--format",
  trainOn: "--train-on",
  valSplit: "--val-split",
  out: "--out",
};

/** The flags that may differ on resume. */
export const RESUME_MUTABLE_FLAGS = [
  "--max-steps",
  "--epochs",
  "--log-every",
  "--checkpoint-every",
  "--eval-every",
  "--backend",
  "--quiet",
] as const;

function show(flag: string, v: unknown): string {
  if (flag === "--no-dropout") return v ? "dropout on" : "--no-dropout";
  if (flag === "--plain") return v ? "--plain" : "no --plain";
  if (flag === "--lora") return v ? `--lora ${JSON.stringify(v)}` : "no --lora";
  if (flag === "--packing") return v ? "--packing" : "no --packing";
  if (v === null || v === undefined) return `no ${flag}`;
  if (Array.isArray(v)) return `${flag} ${v.join(",")}`;
  return `${flag} ${typeof v === "string" ? v : JSON.stringify(v)}`;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * Where this run's settings contradict the checkpoint's: one line per setting, naming both values
 * (`--lr 0.0001 here, --lr 0.003 in the checkpoint`). Settings a checkpoint of an older version did not record
 * are not compared.
 */
export function settingsConflicts(
  saved: { config: Partial<TrainConfig>; run: Partial<RunSettings> },
  now: { config: TrainConfig; run: Omit<RunSettings, "dataFiles"> },
): string[] {
  const out: string[] = [];
  for (const [key, flag] of Object.entries(CONFIG_FLAGS) as [keyof TrainConfig, string][]) {
    // (a checkpoint without `lora` is a full fine-tune: that one is compared too)
    if (!(key in saved.config) && key !== "lora") continue;
    const was = key === "gradAccum" ? saved.config[key] ?? 1 : saved.config[key];
    const is = key === "gradAccum" ? now.config[key] ?? 1 : now.config[key];
    if (key === "lrDecay" && (was ?? "constant") === (is ?? "constant")) continue;
    if (!same(was, is)) out.push(`${show(flag, is)} here, ${show(flag, was)} in the checkpoint`);
  }
  for (const [key, flag] of Object.entries(RUN_FLAGS) as [keyof RunSettings, string][]) {
    if (!(key in saved.run)) continue;
    const was = saved.run[key], is = now.run[key as keyof typeof now.run];
    if (!same(was, is)) out.push(`${show(flag, is)} here, ${show(flag, was)} in the checkpoint`);
  }
  return out;
}

/** Where the data files differ from those the checkpoint was trained on (the order of batches would change). */
export function dataConflicts(saved: RunSettings["dataFiles"] | undefined, now: RunSettings["dataFiles"]): string[] {
  if (!saved) return [];
  const out: string[] = [];
  const pairs = [["training", saved.train, now.train], ["validation", saved.val, now.val]] as const;
  for (const [what, was, is] of pairs) {
    if (!was || !is) {
      if (!!was !== !!is) {
        out.push(`the ${what} file is ${is ? is.path : "absent"} here, ${was?.path ?? "absent"} then`);
      }
      continue;
    }
    if (was.sha256 !== is.sha256) {
      out.push(
        `the ${what} file ${is.path} changed since the checkpoint (sha256 ${was.sha256.slice(0, 12)}… then, ${
          is.sha256.slice(0, 12)
        }… now)`,
      );
    }
  }
  return out;
}
