/**
 * Free-form evaluation of your own conversations: the test file (any chat format of src/data/formats.ts)
 * becomes items whose reference is the last assistant turn and whose prompt is everything before it, as
 * ChatML with the assistant header open (as `chatmlWithSpans` and `promptFor` write it); the scorers that
 * compare a generated answer with the reference (exact match after trimming, and `--score contains`,
 * `regex:PATTERN` or `json-fields`); and {@link planFreeform}, which checks the options and reads the file
 * before any model is loaded. The run itself is freeform_run.ts.
 * @module
 */

import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chatmlWithSpans, IM_START, type Message } from "../data/chatml.ts";
import { DATA_FORMATS, type DataFormat, detectFormat, parseChatData } from "../data/formats.ts";
import { parseJsonl } from "../data/jsonl.ts";
import { MASK_MODES, type MaskMode, type SftInput } from "../data/sft_dataset.ts";
import { DEFAULT_MODEL } from "../io/hub.ts";
import { extractJson, isDict, type JsonValue, normalizeJsonObj, pyEquals, pyJsonLoads, pyStrip } from "./metrics.ts";
import { checkSftDir, type DecodingOptions, NOTEBOOK_EVAL, resolveDecoding } from "./plan.ts";
import { parseTask, type SftTaskMeta } from "./tasks.ts";

/** How a generated answer is scored against the reference, beyond exact match. */
export type Scorer =
  | { kind: "exact" }
  | { kind: "contains" }
  | { kind: "regex"; pattern: string; re: RegExp }
  | { kind: "json-fields" };

/** The `--score` values (regex takes its pattern after the colon). */
export const SCORE_KINDS = ["exact", "contains", "regex:PATTERN", "json-fields"] as const;

/** `--score VALUE` as a scorer: exact | contains | regex:PATTERN | json-fields. */
export function parseScorer(value: string): Scorer {
  if (value === "exact") return { kind: "exact" };
  if (value === "contains") return { kind: "contains" };
  if (value === "json-fields") return { kind: "json-fields" };
  if (value.startsWith("regex:")) {
    const pattern = value.slice("regex:".length);
    if (pattern === "") throw new Error('Invalid --score "regex:": the pattern after "regex:" is empty');
    try {
      return { kind: "regex", pattern, re: new RegExp(pattern, "u") };
    } catch (e) {
      throw new Error(`Invalid --score "${value}": not a regular expression (${(e as Error).message})`);
    }
  }
  throw new Error(`Invalid --score: "${value}" (expected one of ${SCORE_KINDS.join(", ")})`);
}

/** The scorer's name as reports show it ("contains", "regex:^\d+$", …). */
export function scorerName(s: Scorer): string {
  return s.kind === "regex" ? `regex:${s.pattern}` : s.kind;
}

/**
 * An answer as the scorers compare it: trimmed (Python's `strip()` whitespace), and without the spaces next
 * to CJK characters, which a WordPiece tokenizer's decoding puts between every two of them ("退 款" for
 * "退款", in Python too) and a reference does not have.
 */
export function comparable(text: string): string {
  return pyStrip(text).replace(
    /\s+(?=[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}，。！？：；、])|(?<=[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}，。！？：；、])\s+/gu,
    "",
  );
}

/** Exact match of both sides made {@link comparable}. */
export function exactMatch(pred: string, reference: string): boolean {
  return comparable(pred) === comparable(reference);
}

/** The reference parsed as a JSON object, or null when it is not one. */
export function referenceFields(reference: string): { [key: string]: JsonValue } | null {
  let v: JsonValue;
  try {
    v = pyJsonLoads(pyStrip(reference));
  } catch {
    return null;
  }
  return isDict(v) ? v : null;
}

/**
 * Score `pred` against `reference`: exact — equal after trimming; contains — the trimmed reference occurs
 * in the prediction; regex — the prediction (trimmed) matches the pattern somewhere (anchor it with ^…$ for
 * the whole); json-fields — the prediction's JSON object (the last one in it, as the notebook's
 * `extract_json`) has every field of the reference's object, equal after the notebook's normalization
 * (`normalize_json_obj`: whitespace and `##` dropped from keys and string values, full-width digits made
 * ASCII, `orderid` read as `order_id`; `==` on the values, so `"7"` is not `7`); fields the reference does
 * not have are ignored.
 */
export function scoreAnswer(pred: string, reference: string, scorer: Scorer): boolean {
  switch (scorer.kind) {
    case "exact":
      return exactMatch(pred, reference);
    case "contains":
      return comparable(pred).includes(comparable(reference));
    case "regex":
      return scorer.re.test(pyStrip(pred));
    case "json-fields": {
      const want = referenceFields(reference);
      const got = extractJson(pred);
      if (want === null || !isDict(got)) return false;
      const w = normalizeJsonObj(want) as Record<string, unknown>;
      const g = normalizeJsonObj(got) as Record<string, unknown>;
      return Object.keys(w).every((k) => k in g && pyEquals(g[k], w[k]));
    }
  }
}

/** One test conversation: the prompt for generation, the reference answer, and the whole for the loss. */
export interface FreeformItem {
  /** The line of the conversation in the test file. */
  line: number;
  /** The turns before the last assistant turn as ChatML, then `<|im_start|>assistant\n`. */
  prompt: string;
  /** The last user turn (what the reports show as the question; "" when there is none). */
  question: string;
  /** The content of the last assistant turn. */
  reference: string;
  /** The whole conversation, for the loss (its assistant turns are supervised, as in training). */
  messages: Message[];
}

/** A conversation as a free-form item, or undefined when it has no assistant turn. */
export function freeformItem(messages: readonly Message[], line: number): FreeformItem | undefined {
  let last = -1;
  for (const [i, m] of messages.entries()) if (m.role === "assistant") last = i;
  if (last < 0) return undefined;
  const before = messages.slice(0, last);
  const prompt = chatmlWithSpans(before, "assistant").text + `${IM_START}assistant\n`;
  const user = before.findLast((m) => m.role === "user");
  return { line, prompt, question: user?.content ?? "", reference: messages[last]!.content, messages: [...messages] };
}

/** What {@link planFreeform} reads (the evaluation command's options for a free-form run). */
export interface FreeformPlanOptions {
  sftDir: string;
  /** The base model (default sft_task.json's model_name, else the notebook's). */
  model?: string;
  /** The test file: conversations in any format of src/data/formats.ts. */
  testFile?: string;
  /** Its format (default auto: detected from the first record). */
  format?: DataFormat;
  /** The scorer beyond exact match (default exact only). */
  score?: string;
  /** Generations for the first N conversations (default 200; null or 0: all); the loss takes every one. */
  maxSamples?: number | null;
  runBase?: boolean;
  decoding?: DecodingOptions;
}

/** Everything checked and read before any model is loaded. */
export interface FreeformPlan {
  kind: "freeform";
  sftDir: string;
  meta: SftTaskMeta | null;
  model: string;
  testFile: string;
  /** The format read (detected or forced). */
  format: Exclude<DataFormat, "auto">;
  /** Every conversation of the file with an assistant turn. */
  items: FreeformItem[];
  /** The items generated for: the first `maxSamples`. */
  evaluated: FreeformItem[];
  /** Lines skipped: no assistant turn carries loss. */
  skipped: number[];
  /** The extra scorer (undefined: exact match only). */
  scorer?: Scorer;
  /** The loss mask: sft_task.json's, unless it is "none" (then assistant+eos, training's default). */
  mask: MaskMode;
  maxSamples: number | null;
  runBase: boolean;
  decoding: Required<DecodingOptions>;
}

/** The loss inputs of a plan: every item's whole conversation, with the lines. */
export function lossInputs(plan: FreeformPlan): { inputs: SftInput[]; lines: number[] } {
  return { inputs: plan.items.map((x) => x.messages), lines: plan.items.map((x) => x.line) };
}

/**
 * Whether these options ask for a free-form evaluation: the task is "chat" (`--task chat`, or sft_task.json's
 * task without `--task`), a `--format` or `--score` is given, or the `--test-file`'s first record is a
 * conversation (messages, ShareGPT, prompt-completion) rather than a notebook record.
 */
export async function wantsFreeform(
  opts: { task?: string; testFile?: string; format?: string; score?: string },
  meta: SftTaskMeta | null,
): Promise<boolean> {
  const task = opts.task ?? meta?.task;
  if (task === "chat" || opts.format !== undefined || opts.score !== undefined) return true;
  if (opts.testFile === undefined || !existsSync(opts.testFile)) return false;
  try {
    const entries = parseJsonl(await readFile(opts.testFile, "utf8"), opts.testFile);
    const fmt = entries.length ? detectFormat(entries[0]!.value) : undefined;
    return fmt !== undefined && fmt !== "notebook";
  } catch {
    return false; // the notebook's reader names what is wrong with the file
  }
}

/**
 * Check the options and read the test conversations, before any model is loaded: the SFT dir as
 * `planEvaluation` checks it, a `--test-file` (required: a chat model has no test split of its own), a
 * format with assistant turns, a scorer that fits the references, and the numbers sane.
 */
export async function planFreeform(opts: FreeformPlanOptions): Promise<FreeformPlan> {
  const meta = await checkSftDir(opts.sftDir);
  if (opts.testFile === undefined) {
    const chat = meta?.task === "chat" ? ` (${join(opts.sftDir, "sft_task.json")} says task "chat")` : "";
    throw new Error(
      `Cannot evaluate ${opts.sftDir}: a model trained on your own chat data${chat} is evaluated on your own ` +
        "test conversations; pass --test-file FILE.jsonl (messages, ShareGPT, prompt-completion or notebook " +
        "records; the reference answer is each conversation's last assistant turn)",
    );
  }
  if (meta?.task !== undefined && meta.task !== "chat") {
    parseTask(meta.task, ` in ${join(opts.sftDir, "sft_task.json")}`);
  }
  const testFile = opts.testFile;
  if (!existsSync(testFile)) throw new Error(`Cannot evaluate: test file ${testFile} does not exist`);
  const format = opts.format ?? "auto";
  if (!(DATA_FORMATS as readonly string[]).includes(format)) {
    throw new Error(`Invalid --format: "${format}" (expected one of ${DATA_FORMATS.join(", ")})`);
  }
  const data = parseChatData(await readFile(testFile, "utf8"), testFile, format);
  if (data.format === "text") {
    throw new Error(
      `Cannot evaluate ${testFile}: its records are plain text ("text" format), with no assistant turn to ` +
        "compare an answer with; free-form evaluation needs conversations (messages, sharegpt, " +
        "prompt-completion or notebook)",
    );
  }
  const items: FreeformItem[] = [];
  for (const ex of data.examples) {
    if (ex.kind !== "chat") continue;
    const item = freeformItem(ex.messages, ex.line);
    if (item) items.push(item);
  }
  if (items.length === 0) {
    throw new Error(`Cannot evaluate: ${testFile} has no conversation with an assistant turn to compare with`);
  }
  const scorer = opts.score === undefined ? undefined : parseScorer(opts.score);
  if (scorer?.kind === "json-fields") {
    const bad = items.find((x) => referenceFields(x.reference) === null);
    if (bad) {
      throw new Error(
        `Cannot score with --score json-fields: the reference answer of ${testFile}:${bad.line} (its last ` +
          `assistant turn) is not a JSON object: ${JSON.stringify(bad.reference.slice(0, 80))}`,
      );
    }
  }
  const maxSamples = opts.maxSamples === undefined ? NOTEBOOK_EVAL.maxSamples : opts.maxSamples;
  if (maxSamples !== null && (!Number.isInteger(maxSamples) || maxSamples < 0)) {
    throw new Error(`Invalid max samples: ${maxSamples} (expected a whole number ≥ 0; 0 means all)`);
  }
  const all = maxSamples === null || maxSamples === 0;
  const mask = (MASK_MODES as readonly string[]).includes(meta?.mask ?? "") && meta?.mask !== "none"
    ? meta!.mask as MaskMode
    : "assistant+eos";
  return {
    kind: "freeform",
    sftDir: opts.sftDir,
    meta,
    model: opts.model ?? meta?.model_name ?? DEFAULT_MODEL,
    testFile,
    format: data.format,
    items,
    evaluated: all ? items : items.slice(0, maxSamples),
    skipped: data.skipped,
    ...(scorer ? { scorer } : {}),
    mask,
    maxSamples: all ? null : maxSamples,
    runBase: opts.runBase ?? true,
    // greedy, and neither the notebook's repetition penalty nor its no-repeat 3-gram: an answer may well repeat
    // words of the prompt (a label the prompt lists, a name it gives)
    decoding: resolveDecoding({
      ...opts.decoding,
      repetitionPenalty: opts.decoding?.repetitionPenalty ?? 1,
      noRepeatNgramSize: opts.decoding?.noRepeatNgramSize ?? 0,
    }),
  };
}
