/**
 * The evaluation's tasks and the `sft_task.json` a training run writes beside the SFT model (the notebook's
 * `meta`): which tasks exist, and the checks that the file and a task name are what the evaluation can run.
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { SftTask } from "../data/synth.ts";

/** The tasks the evaluation knows. */
export const EVAL_TASKS: readonly SftTask[] = ["classification", "json_extraction"];

/** The `sft_task.json` the training run writes beside the SFT model (the notebook's `meta`). */
export interface SftTaskMeta {
  task?: string;
  use_plain_extract?: boolean;
  labels?: string[] | null;
  model_name?: string;
  mask?: string;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Read and check `sft_task.json` of an SFT dir; null when the file is absent. */
export async function readSftTaskMeta(sftDir: string): Promise<SftTaskMeta | null> {
  const path = join(sftDir, "sft_task.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw new Error(`Cannot read ${path}: ${message(e)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot read ${path}: invalid JSON (${message(e)})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`Cannot read ${path}: not a JSON object`);
  }
  const m = v as Record<string, unknown>;
  const check = (field: string, ok: boolean, what: string) => {
    if (field in m && m[field] !== null && !ok) {
      throw new Error(`Cannot read ${path}: field "${field}" must be ${what}, got ${JSON.stringify(m[field])}`);
    }
  };
  check("task", typeof m.task === "string", "a string");
  check("model_name", typeof m.model_name === "string", "a string");
  check("use_plain_extract", typeof m.use_plain_extract === "boolean", "true or false");
  check(
    "labels",
    Array.isArray(m.labels) && m.labels.length > 0 && m.labels.every((l) => typeof l === "string" && l !== ""),
    "a non-empty list of non-empty strings",
  );
  return m as SftTaskMeta;
}

/** `value` as a task the evaluation knows; `from` says where it was read, for the error (" in FILE" or ""). */
export function parseTask(value: string, from: string): SftTask {
  if (value === "chat") {
    throw new Error(
      `Task "chat"${from} is evaluated free-form, on your own test conversations: pass --test-file FILE.jsonl ` +
        "(bun run eval.ts; in code, planFreeform of src/eval/freeform.ts and runFreeformEvaluation)",
    );
  }
  if (!(EVAL_TASKS as readonly string[]).includes(value)) {
    throw new Error(`Unknown task: "${value}"${from} (expected one of ${EVAL_TASKS.join(", ")})`);
  }
  return value as SftTask;
}
