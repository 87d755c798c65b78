/**
 * ChatML, as the notebook writes it (Part 2 `format_conversation`, Part 4 `SFTDataset`): each message is
 * `<|im_start|>{role}\n{content}<|im_end|>\n`, and the loss is computed only on tokens whose character
 * span overlaps an assistant reply.
 *
 * All positions are JS string (UTF-16 code unit) indices, the same unit the tokenizer's offsets use.
 * Python counts code points; the two agree for text inside the Basic Multilingual Plane.
 *
 * @example
 * ```ts
 * const { text, spans } = chatmlWithSpans(
 *   [{ role: "user", content: "你好" }, { role: "assistant", content: "您好" }],
 *   "assistant",
 * );
 * // text  = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n您好<|im_end|>\n"
 * // spans = [[52, 54]]: the characters of "您好"
 * ```
 * @module
 */

/** One chat message. */
export interface Message {
  role: "system" | "user" | "assistant" | (string & Record<never, never>);
  content: string;
  /** An assistant message's loss weight: 0 leaves it out of the loss (OpenAI's fine-tuning format); default 1. */
  weight?: 0 | 1;
}

/** Which assistant turns carry loss: all of them (TRL's assistant_only_loss), or only the last. */
export type TrainOn = "all" | "last";
/** The values of {@link TrainOn}, for `--train-on`. */
export const TRAIN_ON: readonly TrainOn[] = ["all", "last"];

/** The token that opens a message. */
export const IM_START = "<|im_start|>";
/** The token that closes a message. */
export const IM_END = "<|im_end|>";

/**
 * Which characters carry loss:
 * - "assistant": the content of every assistant message (the notebook's `mask_prompt=True`);
 * - "assistant+eos": that content plus the `<|im_end|>` that closes it, so the model learns to stop;
 * - "none": nothing is masked (the notebook's `mask_prompt=False`); the span is the whole text.
 */
export type SpanMode = "assistant" | "assistant+eos" | "none";

/** A half-open character range [start, end) in UTF-16 code units. */
export type Span = [start: number, end: number];

/** The notebook's `format_conversation`: `<|im_start|>{role}\n{content}<|im_end|>\n` per message. */
export function formatChatml(messages: readonly Message[]): string {
  let s = "";
  for (const m of messages) s += `${IM_START}${m.role}\n${m.content}${IM_END}\n`;
  return s;
}

/**
 * The ChatML text and the character spans that carry loss (see {@link SpanMode}), computed the way the
 * notebook's `SFTDataset._process_example` tracks `assistant_ranges`: every assistant turn whose weight is
 * not 0, or with `trainOn` "last" only the last such turn.
 *
 * Mode "none" returns one span over the whole text. Fed to {@link labelsFromOffsets} that supervises every
 * token of the text but not the tokenizer's added `[CLS]`/`[SEP]` (offset (0,0)); the notebook's
 * `labels = input_ids.clone()` also supervises those (and padding), so a caller that wants exactly the
 * notebook's behaviour copies the ids instead (as src/data/sft_dataset.ts does).
 */
export function chatmlWithSpans(
  messages: readonly Message[],
  mode: SpanMode,
  trainOn: TrainOn = "all",
): { text: string; spans: Span[] } {
  let text = "";
  const spans: Span[] = [];
  let last = -1;
  for (const [i, m] of messages.entries()) if (m.role === "assistant" && m.weight !== 0) last = i;
  for (const [i, m] of messages.entries()) {
    const head = `${IM_START}${m.role}\n`;
    const trained = m.role === "assistant" && m.weight !== 0 && (trainOn === "all" || i === last);
    if (trained && mode !== "none") {
      const start = text.length + head.length;
      const end = start + m.content.length + (mode === "assistant+eos" ? IM_END.length : 0);
      spans.push([start, end]);
    }
    text += `${head}${m.content}${IM_END}\n`;
  }
  if (mode === "none") spans.push([0, text.length]);
  else if (mode !== "assistant" && mode !== "assistant+eos") {
    throw new Error(`Cannot compute loss spans: unknown mode "${mode}" (expected assistant, assistant+eos or none)`);
  }
  return { text, spans };
}

/**
 * The generation prompt of the notebook's `generate_response` and `_build_prompt`:
 * `<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n`.
 */
export function promptFor(userMessage: string): string {
  return `${IM_START}user\n${userMessage}${IM_END}\n${IM_START}assistant\n`;
}

/**
 * Labels by the notebook's rule: token i is supervised (label = its id) when its character span
 * [start, end) overlaps a supervised span (`start < spanEnd && end > spanStart`) and its offset is not
 * (0, 0) (the tokenizer's added `[CLS]`, `[SEP]` and padding); otherwise its label is −100.
 */
export function labelsFromOffsets(
  ids: ArrayLike<number>,
  offsets: ArrayLike<readonly [number, number] | readonly number[]>,
  spans: readonly (readonly [number, number])[],
): number[] {
  if (ids.length !== offsets.length) {
    throw new Error(`Cannot compute labels: ${ids.length} ids but ${offsets.length} offsets`);
  }
  const labels = new Array<number>(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const off = offsets[i]!;
    const s = off[0]!;
    const e = off[1]!;
    let label = -100;
    if (!(s === 0 && e === 0)) {
      for (const [a, b] of spans) {
        if (s < b && e > a) {
          label = ids[i]!;
          break;
        }
      }
    }
    labels[i] = label;
  }
  return labels;
}
