/**
 * The SFT dataset, as the notebook's `SFTDataset`: each conversation becomes ChatML text (or the text of a
 * chat template, see src/data/template.ts), is tokenized
 * with offsets (truncated to `maxLength`, keeping the `[CLS] … [SEP]` framing), and every token whose
 * character span overlaps a supervised span keeps its id as label; all others get −100.
 * Batches are padded to their longest example (default) or to `maxLength` (the notebook's fixed padding).
 * @module
 */

import type { Batch } from "../model/gpt2.ts";
import { chatmlWithSpans, labelsFromOffsets, type Message, type TrainOn } from "./chatml.ts";
import type { ConversationRenderer } from "./template.ts";

/** One example to tokenize: a conversation (rendered as ChatML), or plain text that is trained on whole. */
export type SftInput = readonly Message[] | { readonly text: string };

/** Options of {@link processExample} and {@link buildSftDataset}. */
export interface SftExampleOptions {
  maxLength: number;
  mask: MaskMode;
  /** Which assistant turns carry loss (default all). */
  trainOn?: TrainOn;
  /** How a conversation becomes text and loss spans (default the notebook's ChatML, {@link chatmlWithSpans}). */
  render?: ConversationRenderer;
}

/** Which tokens carry loss. */
export type MaskMode = "assistant" | "assistant+eos" | "none";
/** The mask modes, for flag validation. */
export const MASK_MODES: readonly MaskMode[] = ["assistant", "assistant+eos", "none"];

/** What the dataset needs of a tokenizer. */
export interface SftTokenizer {
  encode(
    text: string,
    opts?: { addSpecialTokens?: boolean; maxLength?: number },
  ): { ids: number[]; offsets: [number, number][]; tokens?: string[] };
  readonly padTokenId: number;
}

/** One tokenized, unpadded example. */
export interface SftExample {
  inputIds: number[];
  labels: number[];
  /** Number of supervised tokens (labels ≠ −100). */
  supervised: number;
  /** A packed row of several examples (packing.ts): per token, 1 + its example's index in the row. */
  segmentIds?: number[];
  /** A packed row: per token, its position within its own example. */
  positionIds?: number[];
}

/** The result of {@link buildSftDataset}. */
export interface SftDataset {
  examples: SftExample[];
  /** Conversations given. */
  total: number;
  /** Conversations dropped: no supervised token was left (see `droppedLines` and `emptyAnswers`). */
  dropped: number;
  /** The line (or, without `lines`, the 1-based position) of each dropped conversation, in order. */
  droppedLines: number[];
  /** How many of the dropped had no supervised token even untruncated (an empty answer), not truncation. */
  emptyAnswers: number;
}

/**
 * Tokenize one conversation (or plain text) and compute its labels. Returns undefined when nothing is
 * supervised. Plain text is trained on whole, as mask "none" trains a conversation.
 */
export function processExample(input: SftInput, tok: SftTokenizer, opts: SftExampleOptions): SftExample | undefined {
  const plain = "text" in input;
  const { text, spans } = plain
    ? { text: input.text, spans: [] }
    : (opts.render ?? chatmlWithSpans)(input as readonly Message[], opts.mask, opts.trainOn);
  const enc = tok.encode(text, { maxLength: opts.maxLength });
  const labels = opts.mask === "none" || plain
    ? [...enc.ids] // the notebook's mask_prompt=False: every real token is a target
    : labelsFromOffsets(enc.ids, enc.offsets, spans);
  const supervised = labels.filter((l) => l !== -100).length;
  // HF shifts by one: a label at position 0 is never used, so at least one supervised token past it is needed
  const usable = labels.slice(1).some((l) => l !== -100);
  if (!usable) return undefined;
  return { inputIds: enc.ids, labels, supervised };
}

/**
 * Build the dataset. Conversations with no supervised token left are dropped and counted, with their
 * lines (`lines[i]` is conversation i's line in its file) and why: truncation cut the answer away, or
 * the answer is empty. A dataset with no supervised token at all is an error that names the cause, and so
 * is a conversation the renderer refuses (a role the chat template does not know): it names the line.
 */
export function buildSftDataset(
  conversations: readonly SftInput[],
  tok: SftTokenizer,
  opts: SftExampleOptions & { source?: string; lines?: readonly number[] },
): SftDataset {
  const examples: SftExample[] = [];
  const droppedLines: number[] = [];
  let emptyAnswers = 0;
  for (const [i, messages] of conversations.entries()) {
    let ex: SftExample | undefined;
    try {
      ex = processExample(messages, tok, opts);
    } catch (e) {
      const where = opts.lines ? `line ${opts.lines[i]}` : `conversation ${i + 1}`;
      throw new Error(
        `Cannot render ${where}${opts.source ? ` of ${opts.source}` : ""}: ${e instanceof Error ? e.message : e}`,
      );
    }
    if (ex) {
      examples.push(ex);
      continue;
    }
    droppedLines.push(opts.lines?.[i] ?? i + 1);
    // untruncated, is anything supervised? If not, the answer itself is empty (or a single token)
    if (!processExample(messages, tok, { ...opts, maxLength: Number.MAX_SAFE_INTEGER })) emptyAnswers++;
  }
  if (examples.length === 0) {
    const from = `Cannot build the SFT dataset${opts.source ? ` from ${opts.source}` : ""}`;
    const n = conversations.length;
    throw new Error(
      emptyAnswers === n
        ? `${from}: none of the ${n} conversations has an answer to learn (every assistant answer is empty or ` +
          `a single token, mask mode "${opts.mask}"; lines ${formatLines(droppedLines)})`
        : `${from}: none of the ${n} conversations has a supervised token after truncation to ${opts.maxLength} ` +
          `(mask mode "${opts.mask}"${emptyAnswers ? `; ${emptyAnswers} of them have an empty answer` : ""}); ` +
          "raise --max-length, or shorten the prompts",
    );
  }
  return { examples, total: conversations.length, dropped: droppedLines.length, droppedLines, emptyAnswers };
}

/** "3, 7, 9" or "3, 7, 9, 12, 15 and 40 more": the first few of a list of line numbers. */
export function formatLines(lines: readonly number[], first = 5): string {
  const shown = lines.slice(0, first).join(", ");
  return lines.length > first ? `${shown} and ${lines.length - first} more` : shown;
}

/** The line printed when conversations were dropped (undefined when none was). */
export function droppedSummary(ds: SftDataset, file: string, maxLength: number): string | undefined {
  if (ds.dropped === 0) return undefined;
  const truncated = ds.dropped - ds.emptyAnswers;
  const why = [
    truncated ? `${truncated} cut away by truncation to ${maxLength} tokens (raise --max-length to keep them)` : "",
    ds.emptyAnswers ? `${ds.emptyAnswers} with an empty answer` : "",
  ].filter(Boolean).join(", ");
  return `Dropped ${ds.dropped} of ${ds.total} examples of ${file} with no supervised token: ${why}; lines ${
    formatLines(ds.droppedLines)
  }`;
}

/**
 * Pad a list of examples into one batch: to the longest (default) or to `maxLength`. Packed rows (with
 * `segmentIds`, see packing.ts) give the batch segment ids and position ids as well, padding 0 in both.
 * `tokens` counts the real (non-padding) tokens.
 */
export function collate(
  examples: readonly SftExample[],
  opts: { padId: number; pad?: "longest" | "max_length"; maxLength?: number },
): Batch & { supervised: number; tokens: number } {
  const B = examples.length;
  const longest = Math.max(...examples.map((e) => e.inputIds.length));
  const T = opts.pad === "max_length" ? Math.max(opts.maxLength ?? longest, longest) : longest;
  const inputIds = new Int32Array(B * T).fill(opts.padId);
  const attentionMask = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(-100);
  const packed = examples.some((e) => e.segmentIds);
  const segmentIds = packed ? new Int32Array(B * T) : undefined;
  const positionIds = packed ? new Int32Array(B * T) : undefined;
  let supervised = 0, tokens = 0;
  for (let b = 0; b < B; b++) {
    const e = examples[b]!;
    inputIds.set(e.inputIds, b * T);
    attentionMask.fill(1, b * T, b * T + e.inputIds.length);
    labels.set(e.labels, b * T);
    // an unpacked example among packed rows is a row of one segment
    if (segmentIds) {
      if (e.segmentIds) segmentIds.set(e.segmentIds, b * T);
      else segmentIds.fill(1, b * T, b * T + e.inputIds.length);
    }
    if (positionIds) {
      if (e.positionIds) positionIds.set(e.positionIds, b * T);
      else e.inputIds.forEach((_, t) => positionIds[b * T + t] = t);
    }
    supervised += e.supervised;
    tokens += e.inputIds.length;
  }
  return { B, T, inputIds, attentionMask, labels, supervised, tokens, ...(packed ? { segmentIds, positionIds } : {}) };
}
