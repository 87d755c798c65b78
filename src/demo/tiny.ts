/**
 * The offline demo's model: a tiny GPT-2 (config in `data/tiny_config.json`) with random weights and a
 * BERT vocabulary built from the training data itself, so the whole pipeline runs with no network.
 * @module
 */

import { readFile } from "node:fs/promises";
import type { Backend } from "../backend/backend.ts";
import type { SftRecord } from "../data/jsonl.ts";
import { parseConfig } from "../model/config.ts";
import { GPT2 } from "../model/gpt2.ts";
import { BertTokenizer } from "../tokenizer/tokenizer.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

/**
 * The demo's training settings where they differ from the notebook's (`demo.ts`, and `bench/time_to_accuracy.ts`
 * which starts from them): a tiny model trained from scratch wants a larger rate than fine-tuning.
 */
export const DEMO_TRAIN = { trainRecords: 2000, batchSize: 16, lr: 3e-3, warmupSteps: 20 } as const;

/** BERT's special tokens, first, as in every BERT vocab.txt. */
const SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/**
 * A vocabulary from the records: the specials, the ChatML role words, then every character of the texts
 * (BertPreTokenizer splits CJK characters and punctuation one by one; ASCII runs are covered by the
 * single letters and `##` letters that `prepareForSft()` adds, plus whole words that occur often).
 */
export function vocabFromRecords(records: readonly SftRecord[], opts: { minWordCount?: number } = {}): string[] {
  const chars = new Set<string>();
  const words = new Map<string, number>();
  for (const r of records) {
    for (const text of [r.instruction, r.response]) {
      for (const ch of text) if (!/[A-Za-z0-9\s]/.test(ch)) chars.add(ch);
      for (const w of text.match(/[A-Za-z]{2,}/g) ?? []) words.set(w, (words.get(w) ?? 0) + 1);
    }
  }
  const min = opts.minWordCount ?? 20;
  const frequent = [...words].filter(([, n]) => n >= min).map(([w]) => w).sort();
  const vocab = [...SPECIALS, "user", "assistant", "system", ...frequent, ...[...chars].sort()];
  return [...new Set(vocab)];
}

/** The tiny model and its SFT tokenizer. */
export async function tinyModel(
  be: Backend,
  args: { configPath: string; records: readonly SftRecord[]; seed?: number },
): Promise<{ model: GPT2; tokenizer: Tokenizer }> {
  const tokenizer = BertTokenizer.fromVocab(vocabFromRecords(args.records), {
    doLowerCase: false,
    source: "demo vocabulary",
  });
  tokenizer.prepareForSft();
  const json = JSON.parse(await readFile(args.configPath, "utf8")) as Record<string, unknown>;
  const config = parseConfig({ ...json, vocab_size: tokenizer.vocabSize }, { file: args.configPath });
  const model = GPT2.random(be, config, args.seed ?? 0);
  return { model, tokenizer };
}
