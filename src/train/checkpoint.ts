/**
 * Training checkpoints: the parameters, the AdamW moments, the loop position and the run's settings, written
 * so that once one checkpoint exists a complete, loadable one exists at every instant, whatever kills the
 * process and when.
 *
 * Layout of `<dir>/`: `model.safetensors` (parameters by HF name; a LoRA run's `adapter_model.safetensors`, the
 * adapter's tensors by peft name: see {@link weightsFile}), `optimizer.safetensors`
 * (`m.<name>`, `v.<name>`), `trainer_state.json` (step, epoch, batch, optimizer step, settings), and, when
 * the caller passes them, the files of a model directory (`config.json`, the tokenizer, …): then the
 * checkpoint loads as a model (`loadModelDir`) as well, as Hugging Face's checkpoints do. The last file
 * written is `checkpoint_manifest.json`: every other file with its size and sha256. A directory without a
 * manifest, or whose files do not match it, is not a checkpoint.
 *
 * How a save proceeds (`dir` is `<run-dir>/checkpoint`):
 * 1. every file goes into `<dir>.tmp-<pid>-<random>` and is fsynced; the manifest last, then the directory;
 * 2. `<dir>.old` is removed (the new one is complete now), `<dir>` is renamed to `<dir>.old`, the new one
 *    to `<dir>`, and `<dir>.old` and any other temporary of this checkpoint are removed.
 * A kill at any point leaves at least one complete checkpoint among `<dir>`, `<dir>.old` and
 * `<dir>.tmp-*`; {@link findCheckpoint} takes the newest complete one.
 * @module
 */

import { createHash } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { exists, writeFileSynced } from "../io/atomic.ts";
import { readSafetensors, writeSafetensors } from "../io/safetensors.ts";
import type { GPT2, HostTensor } from "../model/gpt2.ts";
import type { AdamW, AdamWState } from "./adamw.ts";
import type { TrainConfig, TrainPosition } from "./trainer.ts";

/**
 * The file of the trained tensors: `model.safetensors` (every parameter), or with a LoRA adapter attached
 * `adapter_model.safetensors` (the adapter's tensors, as peft names them; the base model stays where it was).
 */
export function weightsFile(model: Pick<GPT2, "lora">): string {
  return model.lora ? "adapter_model.safetensors" : "model.safetensors";
}

/** The file written last: what a complete checkpoint holds. */
export const CHECKPOINT_MANIFEST = "checkpoint_manifest.json";

/** What `trainer_state.json` holds. */
export interface TrainerState {
  version: 1;
  position: TrainPosition;
  optimizerStep: number;
  config: TrainConfig;
  vocabSize: number;
  /** The run's settings (model source, data files and their hashes, task, mask, out, …) to check on resume. */
  run: Record<string, unknown>;
  savedAt: string;
}

/** What `checkpoint_manifest.json` holds. */
export interface CheckpointManifest {
  version: 1;
  step: number;
  savedAt: string;
  files: { name: string; bytes: number; sha256: string }[];
}

/** The file operations a save uses; tests pass their own to inject faults (a full disk, a read-only one). */
export interface CheckpointFs {
  /** Write `data` to the new file `path` and fsync it. */
  writeFileSynced(path: string, data: Uint8Array | string): Promise<void>;
}

/** fsync a directory so that the names in it survive a power cut (best effort: not every platform can). */
async function syncDir(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, "r");
    await fh.sync();
  } catch {
    // Windows and some runtimes cannot open or fsync a directory; the renames are still atomic
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** The real file system (what a save uses unless a test passes its own). */
export const DEFAULT_CHECKPOINT_FS: CheckpointFs = { writeFileSynced };

/** A parameter or moment that is NaN or infinite: such a checkpoint is never written. */
export class NonFiniteCheckpointError extends Error {
  constructor(readonly tensor: string, readonly index: number, readonly value: number) {
    super(`Cannot save checkpoint: ${tensor}[${index}] is ${value}; training has diverged`);
    this.name = "NonFiniteCheckpointError";
  }
}

function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Why a write failed, naming the path: ENOSPC and EROFS said in words. */
function describeWriteError(e: unknown, path: string): string {
  const code = (e as { code?: string }).code;
  const words: Record<string, string> = {
    ENOSPC: "no space left on the device",
    EROFS: "the file system is read-only",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EDQUOT: "disk quota exceeded",
  };
  const what = code && words[code] ? `${words[code]} (${code})` : e instanceof Error ? e.message : String(e);
  return `${path}: ${what}`;
}

/**
 * Write a checkpoint into `dir`, replacing any previous one (see the module comment for the order of the
 * steps). Parameters and moments are checked to be finite first: a diverged run writes nothing and throws
 * {@link NonFiniteCheckpointError}. A failed write (a full disk) removes its temporary directory and throws
 * an error naming the path; the previous checkpoint is untouched.
 */
export async function saveCheckpoint(
  dir: string,
  args: {
    model: GPT2;
    optimizer: AdamW;
    position: TrainPosition;
    config: TrainConfig;
    run: Record<string, unknown>;
    /**
     * The files of a model directory, its {@link weightsFile} included (`modelDirFiles`, or an adapter
     * directory's), made from the trained tensors read for the save; default: the weights alone.
     */
    modelFiles?: (tensors: Map<string, HostTensor>) => Promise<Record<string, string | Uint8Array>>;
    fs?: CheckpointFs;
  },
): Promise<void> {
  const fs = args.fs ?? DEFAULT_CHECKPOINT_FS;
  // the parameters are read from the device once: checked here, then serialised
  const tensors = await args.model.trainableTensors();
  const weights = weightsFile(args.model);
  for (const [name, t] of tensors) {
    const i = firstNonFinite(t.data as Float32Array);
    if (i >= 0) throw new NonFiniteCheckpointError(name, i, (t.data as Float32Array)[i]!);
  }
  const opt = await args.optimizer.exportState();
  for (const [label, moments] of [["m", opt.m], ["v", opt.v]] as const) {
    for (const [name, data] of moments) {
      const i = firstNonFinite(data);
      if (i >= 0) throw new NonFiniteCheckpointError(`AdamW ${label}.${name}`, i, data[i]!);
    }
  }
  const files: Record<string, string | Uint8Array> = {
    ...(args.modelFiles ? await args.modelFiles(tensors) : { [weights]: writeSafetensors(tensors) }),
  };
  for (const reserved of ["optimizer.safetensors", "trainer_state.json", CHECKPOINT_MANIFEST]) {
    if (reserved in files) throw new Error(`Cannot save checkpoint to ${dir}: modelFiles may not contain ${reserved}`);
  }
  if (!(weights in files)) throw new Error(`Cannot save checkpoint to ${dir}: modelFiles has no ${weights}`);
  const optTensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, data] of opt.m) optTensors.set(`m.${name}`, { shape: [data.length], data });
  for (const [name, data] of opt.v) optTensors.set(`v.${name}`, { shape: [data.length], data });
  files["optimizer.safetensors"] = writeSafetensors(optTensors);
  const savedAt = new Date().toISOString();
  const state: TrainerState = {
    version: 1,
    position: args.position,
    optimizerStep: opt.step,
    config: args.config,
    vocabSize: args.model.config.vocabSize,
    run: args.run,
    savedAt,
  };
  files["trainer_state.json"] = JSON.stringify(state, null, 2) + "\n";

  const tmp = `${dir}.tmp-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
  let current = tmp;
  try {
    await mkdir(dirname(dir), { recursive: true });
    await mkdir(tmp);
    const manifest: CheckpointManifest = { version: 1, step: args.position.step, savedAt, files: [] };
    for (const [name, data] of Object.entries(files)) {
      current = join(tmp, name);
      await fs.writeFileSynced(current, data);
      const bytes = typeof data === "string" ? new TextEncoder().encode(data).length : data.length;
      manifest.files.push({ name, bytes, sha256: sha256(data) });
    }
    current = join(tmp, CHECKPOINT_MANIFEST);
    await fs.writeFileSynced(current, JSON.stringify(manifest, null, 2) + "\n");
    await syncDir(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw new Error(
      `Cannot save checkpoint: ${describeWriteError(e, current)}; the partial ${basename(tmp)} was removed` +
        " and the previous checkpoint is kept",
    );
  }
  // the new checkpoint is complete on disk: only now may the older ones go
  const old = `${dir}.old`;
  await rm(old, { recursive: true, force: true });
  if (await exists(dir)) await rename(dir, old);
  await rename(tmp, dir);
  await syncDir(dirname(dir));
  await removeOtherCopies(dir);
}

/** `<dir>.old` and every `<dir>.tmp-*`: the places a checkpoint can be besides `dir` itself. */
async function siblingCopies(dir: string): Promise<string[]> {
  const parent = dirname(dir), name = basename(dir);
  let entries: string[];
  try {
    entries = await readdir(parent);
  } catch {
    return [];
  }
  return entries.filter((e) => e === `${name}.old` || e.startsWith(`${name}.tmp-`)).map((e) => join(parent, e));
}

/** Remove `<dir>.old` and stale temporaries (the caller holds the run directory's lock, so none is being written). */
export async function removeOtherCopies(dir: string): Promise<void> {
  for (const p of await siblingCopies(dir)) await rm(p, { recursive: true, force: true });
}

/** Remove the checkpoint in `dir` and every copy of it (`--overwrite`). */
export async function removeCheckpoint(dir: string): Promise<void> {
  await removeOtherCopies(dir);
  await rm(dir, { recursive: true, force: true });
}

/**
 * The manifest of `dir` when `dir` is a complete checkpoint (every listed file present with its size),
 * else undefined. A directory written before manifests existed (trainer_state.json, model.safetensors and
 * optimizer.safetensors, no manifest) counts as complete at the step its trainer state names.
 */
async function completeManifest(dir: string): Promise<CheckpointManifest | undefined> {
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, CHECKPOINT_MANIFEST), "utf8"));
  } catch {
    const legacy = ["trainer_state.json", "model.safetensors", "optimizer.safetensors"];
    if (basename(dir) !== basename(dir).replace(/\.(old|tmp-.*)$/, "")) return undefined;
    for (const f of legacy) if (!(await exists(join(dir, f)))) return undefined;
    try {
      const state = JSON.parse(await readFile(join(dir, "trainer_state.json"), "utf8")) as TrainerState;
      if (typeof state.position?.step !== "number") return undefined;
      return { version: 1, step: state.position.step, savedAt: state.savedAt ?? "", files: [] };
    } catch {
      return undefined;
    }
  }
  if (manifest?.version !== 1 || !Array.isArray(manifest.files) || typeof manifest.step !== "number") return undefined;
  for (const f of manifest.files) {
    if (typeof f?.name !== "string" || f.name !== basename(f.name)) return undefined;
    try {
      if ((await stat(join(dir, f.name))).size !== f.bytes) return undefined;
    } catch {
      return undefined;
    }
  }
  return manifest;
}

/**
 * The newest complete checkpoint among `dir`, `<dir>.old` and `<dir>.tmp-*` (a save interrupted at any
 * point leaves one), or undefined when there is none.
 */
export async function findCheckpoint(dir: string): Promise<string | undefined> {
  let best: { path: string; step: number } | undefined;
  for (const path of [dir, ...(await siblingCopies(dir))]) {
    const m = await completeManifest(path);
    if (m && (best === undefined || m.step > best.step)) best = { path, step: m.step };
  }
  return best?.path;
}

/** Whether anything checkpoint-like is in `dir` or beside it, complete or not (for `--overwrite`'s check). */
export async function anyCheckpoint(dir: string): Promise<boolean> {
  return (await exists(dir)) || (await siblingCopies(dir)).length > 0;
}

/** Read a checkpoint's trainer state only (cheap: settings and position, before any model is loaded). */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const statePath = join(dir, "trainer_state.json");
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(statePath, "utf8")) as TrainerState;
  } catch (e) {
    throw new Error(`Cannot read checkpoint ${statePath}: ${e instanceof Error ? e.message : e}`);
  }
  const bad = (what: string) => new Error(`Cannot read checkpoint ${statePath}: ${what}`);
  if (typeof state !== "object" || state === null || state.version !== 1) {
    throw bad("not a trainer state of version 1");
  }
  const p = state.position as unknown as Record<string, unknown> | undefined;
  if (typeof p !== "object" || p === null) throw bad('no "position"');
  for (const k of ["step", "epoch", "batchInEpoch", "epochBatches"]) {
    const v = p[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw bad(`position.${k} is ${JSON.stringify(v)} (expected a whole number ≥ 0)`);
    }
  }
  if (typeof p.epochLossSum !== "number" || !Number.isFinite(p.epochLossSum)) {
    throw bad(`position.epochLossSum is ${JSON.stringify(p.epochLossSum)} (expected a finite number)`);
  }
  // (absent in checkpoints of versions that did not count it)
  const seen = p.tokensSeen;
  if (seen !== undefined && (typeof seen !== "number" || !Number.isInteger(seen) || seen < 0)) {
    throw bad(`position.tokensSeen is ${JSON.stringify(seen)} (expected a whole number ≥ 0)`);
  }
  if (typeof state.optimizerStep !== "number" || !Number.isInteger(state.optimizerStep) || state.optimizerStep < 0) {
    throw bad(`optimizerStep is ${JSON.stringify(state.optimizerStep)} (expected a whole number ≥ 0)`);
  }
  if (typeof state.vocabSize !== "number") throw bad(`vocabSize is ${JSON.stringify(state.vocabSize)}`);
  if (typeof state.config !== "object" || state.config === null) throw bad('no "config"');
  if (typeof state.run !== "object" || state.run === null) state.run = {};
  return state;
}

async function readVerified(dir: string, name: string, manifest: CheckpointManifest | undefined): Promise<Uint8Array> {
  const path = join(dir, name);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    throw new Error(`Cannot read checkpoint ${path}: ${e instanceof Error ? e.message : e}`);
  }
  const entry = manifest?.files.find((f) => f.name === name);
  if (manifest && manifest.files.length > 0) {
    if (!entry) throw new Error(`Cannot read checkpoint ${path}: not listed in ${CHECKPOINT_MANIFEST}`);
    if (sha256(bytes) !== entry.sha256) {
      throw new Error(
        `Cannot read checkpoint ${path}: its sha256 differs from ${CHECKPOINT_MANIFEST} (the file changed)`,
      );
    }
  }
  return bytes;
}

/** Read a checkpoint: parameters, optimizer state and trainer state, each file checked against the manifest. */
export async function loadCheckpoint(
  dir: string,
): Promise<{ params: Map<string, HostTensor>; optimizer: AdamWState; state: TrainerState }> {
  const manifest = await completeManifest(dir);
  if (!manifest) throw new Error(`Cannot read checkpoint ${dir}: it is incomplete (no valid ${CHECKPOINT_MANIFEST})`);
  await readVerified(dir, "trainer_state.json", manifest);
  const state = await readTrainerState(dir);
  // a LoRA run's checkpoint holds the adapter instead of the model (see weightsFile)
  const weights = manifest.files.some((f) => f.name === "adapter_model.safetensors")
    ? "adapter_model.safetensors"
    : "model.safetensors";
  const modelPath = join(dir, weights);
  const params = new Map<string, HostTensor>();
  for (const [name, t] of readSafetensors(await readVerified(dir, weights, manifest), modelPath)) {
    if (!(t.data instanceof Float32Array)) {
      throw new Error(`Cannot read checkpoint ${modelPath}: ${name} is ${t.dtype} (expected a float tensor)`);
    }
    params.set(name, { shape: t.shape, data: t.data });
  }
  const optPath = join(dir, "optimizer.safetensors");
  const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
  for (const [name, t] of readSafetensors(await readVerified(dir, "optimizer.safetensors", manifest), optPath)) {
    if (!(t.data instanceof Float32Array)) {
      throw new Error(`Cannot read checkpoint ${optPath}: ${name} is ${t.dtype} (expected F32)`);
    }
    if (name.startsWith("m.")) m.set(name.slice(2), t.data);
    else if (name.startsWith("v.")) v.set(name.slice(2), t.data);
    else {throw new Error(
        `Cannot read checkpoint ${optPath}: unexpected tensor ${name} (expected m.<name> or v.<name>)`,
      );}
  }
  return { params, optimizer: { step: state.optimizerStep, m, v }, state };
}

/**
 * Check a loaded checkpoint against the model it is to be resumed into: every parameter present with the
 * model's shape and no other, and AdamW's two moments for every parameter (once a step was taken) with its
 * element count. Throws naming the checkpoint, the tensor and what was expected.
 */
export function validateCheckpoint(
  dir: string,
  ck: { params: Map<string, HostTensor>; optimizer: AdamWState },
  model: GPT2,
): void {
  const fail = (what: string) => {
    throw new Error(`Cannot resume from ${dir}: ${what}`);
  };
  const file = weightsFile(model);
  for (const [name, t] of model.trainable) {
    const saved = ck.params.get(name);
    if (!saved) fail(`${file} has no ${name}`);
    else if (saved.shape.join(",") !== t.shape.join(",")) {
      fail(`${name} has shape [${saved.shape}] in ${file}, the model [${t.shape}]`);
    }
    if (ck.optimizer.step > 0) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      for (const [label, moments] of [["m", ck.optimizer.m], ["v", ck.optimizer.v]] as const) {
        const mom = moments.get(name);
        if (!mom) fail(`optimizer.safetensors has no ${label}.${name}`);
        else if (mom.length !== n) fail(`${label}.${name} has ${mom.length} elements, the parameter ${n}`);
      }
    }
  }
  for (const name of ck.params.keys()) {
    if (!model.trainable.has(name)) fail(`${file} has ${name}, which the model does not`);
  }
}
