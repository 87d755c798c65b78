/**
 * Training checkpoints: the parameters, the AdamW moments, the loop position and the settings, written
 * as one directory that replaces the previous one atomically (a crash mid-write leaves the last good
 * checkpoint in place).
 *
 * Layout of `<dir>/`: `model.safetensors` (parameters by HF name), `optimizer.safetensors`
 * (`m.<name>`, `v.<name>`), `trainer_state.json` (step, epoch, batch, optimizer step, settings), and, when
 * the caller passes them, the files of a model directory (`config.json`, the tokenizer, …): then the
 * checkpoint loads as a model (`loadModelDir`) as well, as Hugging Face's checkpoints do.
 * @module
 */

import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import process from "node:process";
import { readSafetensors, writeSafetensors } from "../io/safetensors.ts";
import type { GPT2, HostTensor } from "../model/gpt2.ts";
import type { AdamW, AdamWState } from "./adamw.ts";
import type { TrainConfig, TrainPosition } from "./trainer.ts";

/** What `trainer_state.json` holds. */
export interface TrainerState {
  version: 1;
  position: TrainPosition;
  optimizerStep: number;
  config: TrainConfig;
  vocabSize: number;
  /** Free-form settings of the run (task, model id, mask mode) to check on resume. */
  run: Record<string, unknown>;
  savedAt: string;
}

/** Write a checkpoint into `dir`, replacing any previous one atomically. */
export async function saveCheckpoint(
  dir: string,
  args: {
    model: GPT2;
    optimizer: AdamW;
    position: TrainPosition;
    config: TrainConfig;
    run: Record<string, unknown>;
    /** The files of a model directory, its `model.safetensors` included (`modelDirFiles`); default: the weights. */
    modelFiles?: Record<string, string | Uint8Array>;
  },
): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  const files = args.modelFiles ?? { "model.safetensors": writeSafetensors(await args.model.toTensors()) };
  for (const reserved of ["optimizer.safetensors", "trainer_state.json"]) {
    if (reserved in files) throw new Error(`Cannot save checkpoint to ${dir}: modelFiles may not contain ${reserved}`);
  }
  if (!("model.safetensors" in files)) {
    throw new Error(`Cannot save checkpoint to ${dir}: modelFiles has no model.safetensors`);
  }
  for (const [name, data] of Object.entries(files)) await writeFile(join(tmp, name), data);
  const opt = await args.optimizer.exportState();
  const optTensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, data] of opt.m) optTensors.set(`m.${name}`, { shape: [data.length], data });
  for (const [name, data] of opt.v) optTensors.set(`v.${name}`, { shape: [data.length], data });
  await writeFile(join(tmp, "optimizer.safetensors"), writeSafetensors(optTensors));
  const state: TrainerState = {
    version: 1,
    position: args.position,
    optimizerStep: opt.step,
    config: args.config,
    vocabSize: args.model.config.vocabSize,
    run: args.run,
    savedAt: new Date().toISOString(),
  };
  await writeFile(join(tmp, "trainer_state.json"), JSON.stringify(state, null, 2) + "\n");
  // swap: the old checkpoint is moved aside first, so there is always one complete checkpoint on disk
  const old = `${dir}.old`;
  await rm(old, { recursive: true, force: true });
  if (await exists(dir)) await rename(dir, old);
  await mkdir(dirname(dir), { recursive: true });
  await rename(tmp, dir);
  await rm(old, { recursive: true, force: true });
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Whether `dir` holds a checkpoint (or only its `.old` twin from an interrupted swap). */
export async function findCheckpoint(dir: string): Promise<string | undefined> {
  if (await exists(join(dir, "trainer_state.json"))) return dir;
  if (await exists(join(`${dir}.old`, "trainer_state.json"))) return `${dir}.old`;
  return undefined;
}

/** Read a checkpoint: parameters, optimizer state and trainer state. */
export async function loadCheckpoint(
  dir: string,
): Promise<{ params: Map<string, HostTensor>; optimizer: AdamWState; state: TrainerState }> {
  const statePath = join(dir, "trainer_state.json");
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(statePath, "utf8")) as TrainerState;
  } catch (e) {
    throw new Error(`Cannot read checkpoint ${statePath}: ${e instanceof Error ? e.message : e}`);
  }
  if (state.version !== 1 || typeof state.position?.step !== "number") {
    throw new Error(`Cannot read checkpoint ${statePath}: not a trainer state of version 1`);
  }
  const modelPath = join(dir, "model.safetensors");
  const params = new Map<string, HostTensor>();
  for (const [name, t] of readSafetensors(new Uint8Array(await readFile(modelPath)), modelPath)) {
    params.set(name, { shape: t.shape, data: t.data as Float32Array });
  }
  const optPath = join(dir, "optimizer.safetensors");
  const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
  for (const [name, t] of readSafetensors(new Uint8Array(await readFile(optPath)), optPath)) {
    if (name.startsWith("m.")) m.set(name.slice(2), t.data as Float32Array);
    else if (name.startsWith("v.")) v.set(name.slice(2), t.data as Float32Array);
  }
  return { params, optimizer: { step: state.optimizerStep, m, v }, state };
}
