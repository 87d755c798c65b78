/**
 * The free-form evaluation's run: for the base model (unless `runBase` is false) and the SFT model, the
 * loss over the test conversations' assistant turns (the training's dataset and loss: `buildSftDataset`
 * with the model's mask, `GPT2.loss`), its perplexity, the mean token accuracy (the argmax next token
 * equals the label, on the supervised tokens), and the generations for the first `maxSamples`
 * conversations (the evaluation's generator), scored by exact match and the chosen scorer.
 *
 * Both models get the same ChatML text, each tokenized with its own tokenizer (the base tokenizer without
 * the SFT tokens, as the notebook's tasks load it); generation stops at `<|im_end|>` where the tokenizer
 * has it (else at the model's eos) and the answer is cut at the text `<|im_end|>`.
 *
 * The loss is the mean over every supervised token of the file (the per-batch sums added up), so it does
 * not depend on the batch size; training's validation loss is the mean of per-batch means, the same number
 * when every batch has as many supervised tokens.
 * @module
 */

import { stderr } from "node:process";
import type { Backend } from "../backend/backend.ts";
import { buildSftDataset, collate, type MaskMode, type SftInput } from "../data/sft_dataset.ts";
import type { ResolveModelOptions } from "../io/hub.ts";
import { ProgressBar } from "../io/progress.ts";
import { type GPT2, shiftLabels, supervisedRuns } from "../model/gpt2.ts";
import { loadModelAndTokenizer } from "../model/load.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { exactMatch, type FreeformPlan, lossInputs, scoreAnswer, scorerName } from "./freeform.ts";
import { writeFreeformReport } from "./freeform_report.ts";
import { generator } from "./predictors.ts";
import { runtimeName } from "../runtime.ts";

/** Conversations per loss batch. */
export const LOSS_BATCH = 4;

/** The loss figures of one model over the test conversations. */
export interface LossFigures {
  /** Mean cross-entropy per supervised token (nats). */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** The share of supervised tokens whose argmax next-token prediction is the label. */
  tokenAccuracy: number;
  /** Supervised tokens (the shifted labels ≠ −100). */
  tokens: number;
  /** Conversations in the loss. */
  conversations: number;
  /** Conversations with no supervised token left (truncated to n_positions, or an empty answer). */
  dropped: number;
}

/**
 * How many rows of `logits` ([rows, V], row-major) have their largest value at `targets[row]` (the first
 * largest, as `argmax` takes it).
 */
export function argmaxMatches(logits: ArrayLike<number>, V: number, targets: ArrayLike<number>): number {
  let correct = 0;
  for (let r = 0; r < targets.length; r++) {
    let best = 0, bestValue = -Infinity;
    for (let v = 0; v < V; v++) {
      const x = logits[r * V + v]!;
      if (x > bestValue) {
        bestValue = x;
        best = v;
      }
    }
    if (best === targets[r]) correct++;
  }
  return correct;
}

/**
 * Loss, perplexity and token accuracy of `model` on `inputs`, tokenized as training does (ChatML, the
 * `mask`'s supervised spans, truncated to the model's n_positions) and batched by {@link LOSS_BATCH}.
 */
export async function conversationLoss(
  model: GPT2,
  tokenizer: Tokenizer,
  inputs: readonly SftInput[],
  opts: { mask: MaskMode; lines?: readonly number[]; source?: string; batchSize?: number },
): Promise<LossFigures> {
  const ds = buildSftDataset(inputs, tokenizer, {
    maxLength: model.config.nPositions,
    mask: opts.mask,
    lines: opts.lines,
    source: opts.source,
  });
  const be = model.be, V = model.config.vocabSize, step = opts.batchSize ?? LOSS_BATCH;
  let lossSum = 0, tokens = 0, correct = 0;
  for (let i = 0; i < ds.examples.length; i += step) {
    const batch = collate(ds.examples.slice(i, i + step), { padId: tokenizer.padTokenId });
    // the training's loss (mean over this batch's supervised tokens), weighted back to a sum
    const { loss, supervised } = model.loss(batch);
    lossSum += (await be.read(loss))[0]! * supervised;
    be.free(loss);
    tokens += supervised;
    // the logits at the supervised positions, for their argmax
    const { targets } = shiftLabels(batch.labels, batch.B, batch.T);
    const ids = be.upload(batch.inputIds, "input ids");
    const mask = be.upload(batch.attentionMask!, "attention mask");
    const logits = model.forward({ ids, mask, B: batch.B, T: batch.T, rows: supervisedRuns(targets) });
    const values = await be.read(logits.buf);
    for (const b of [logits.buf, ids, mask]) be.free(b);
    correct += argmaxMatches(values, V, targets.filter((y) => y !== -100));
  }
  const loss = lossSum / tokens;
  return {
    loss,
    perplexity: Math.exp(loss),
    tokenAccuracy: correct / tokens,
    tokens,
    conversations: ds.examples.length,
    dropped: ds.dropped,
  };
}

/** One model's figures in the free-form report. */
export interface FreeformModelSummary extends LossFigures {
  /** The share of generated answers equal to the reference after trimming. */
  exactMatch: number;
  /** How many were. */
  exactCorrect: number;
  /** Answers generated. */
  generated: number;
  /** The `--score` scorer's share and count, when one was given. */
  score?: { name: string; accuracy: number; correct: number };
}

/** One generated item, both models side by side. */
export interface FreeformRow {
  line: number;
  question: string;
  reference: string;
  sft: string;
  sftExact: boolean;
  sftScore?: boolean;
  base?: string;
  baseExact?: boolean;
  baseScore?: boolean;
}

/** The free-form evaluation's report (report.json holds it as it is). */
export interface FreeformReport {
  task: "chat";
  /** The base model (hub id or directory). */
  model: string;
  checkpoint: string;
  testFile: string;
  format: string;
  /** The extra scorer's name; absent: exact match only. */
  score?: string;
  base?: FreeformModelSummary;
  sft: FreeformModelSummary;
  /** Every generated item. */
  rows: FreeformRow[];
  /** Lines of the test file skipped (no assistant turn carries loss). */
  skipped: number[];
  settings: {
    maxSamples: number | null;
    mask: MaskMode;
    maxNewTokens: number;
    doSample: boolean;
    temperature: number;
    topP: number;
    repetitionPenalty: number;
    noRepeatNgramSize: number;
    backend: string;
    runtime: string;
    startedAt: string;
  };
  seconds: number;
}

/** What {@link runFreeformEvaluation} returns. */
export interface FreeformRunResult {
  report: FreeformReport;
  paths?: { md: string; json: string };
}

/** Options of {@link runFreeformEvaluation}. */
export interface FreeformRunOptions {
  plan: FreeformPlan;
  backend: Backend;
  /** Write `<reportBase>.md` and `<reportBase>.json` (default: none). */
  reportBase?: string;
  hub?: ResolveModelOptions;
  /** "bar" (or "auto" on a terminal): a progress bar of the generations on stderr; else none. */
  progress?: "auto" | "bar" | "lines" | "none";
  print?: (line: string) => void;
  warn?: (message: string) => void;
}

interface ModelPass {
  summary: FreeformModelSummary;
  preds: string[];
  exact: boolean[];
  scored?: boolean[];
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function evaluatePass(
  model: GPT2,
  tokenizer: Tokenizer,
  plan: FreeformPlan,
  name: string,
  opts: { bar: boolean; print: (l: string) => void },
): Promise<ModelPass> {
  const { inputs, lines } = lossInputs(plan);
  opts.print(`  loss over ${inputs.length} conversations`);
  const figures = await conversationLoss(model, tokenizer, inputs, { mask: plan.mask, lines, source: plan.testFile });
  const predict = generator(model, tokenizer, { chatml: true, raw: true, decoding: plan.decoding });
  const items = plan.evaluated, total = items.length;
  const preds: string[] = [];
  const bar = opts.bar
    ? new ProgressBar({ total, unit: "items", itemName: "items", label: `generate ${name}` })
    : undefined;
  try {
    const chunk = predict.prefetchSize ?? 1;
    for (let i = 0; i < total; i++) {
      const item = items[i]!;
      try {
        if (predict.prefetch && i % chunk === 0) {
          await predict.prefetch(items.slice(i, i + chunk).map((x) => x.prompt), i);
        }
        preds.push(await predict(item.prompt, i));
      } catch (e) {
        throw new Error(
          `Cannot evaluate the ${name} model on the conversation of ${plan.testFile}:${item.line}: ${message(e)}`,
        );
      }
      bar?.update(i + 1);
    }
  } finally {
    bar?.finish();
  }
  const exact = items.map((x, i) => exactMatch(preds[i]!, x.reference));
  const exactCorrect = exact.filter(Boolean).length;
  const share = (n: number) => (total === 0 ? 0 : n / total);
  const summary: FreeformModelSummary = {
    ...figures,
    exactMatch: share(exactCorrect),
    exactCorrect,
    generated: total,
  };
  let scored: boolean[] | undefined;
  if (plan.scorer) {
    const s = plan.scorer;
    scored = items.map((x, i) => scoreAnswer(preds[i]!, x.reference, s));
    const correct = scored.filter(Boolean).length;
    summary.score = { name: scorerName(s), accuracy: share(correct), correct };
  }
  return { summary, preds, exact, ...(scored ? { scored } : {}) };
}

/**
 * Run the free-form evaluation of `plan` (see {@link planFreeform}): the base model, then the SFT model,
 * each loaded once and released after its pass; the report is written when `reportBase` is given.
 */
export async function runFreeformEvaluation(opts: FreeformRunOptions): Promise<FreeformRunResult> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const print = opts.print ?? ((l: string) => console.log(l));
  const warn = opts.warn ?? ((m: string) => void stderr.write(`warning: ${m}\n`));
  const { plan, backend: be } = opts;
  const bar = opts.progress === "bar" || (opts.progress === "auto" && stderr.isTTY === true);
  print(
    `Task: chat (free-form: loss, token accuracy and generations${
      plan.scorer ? `, --score ${scorerName(plan.scorer)}` : ""
    })`,
  );
  print(
    `Test file: ${plan.testFile} (format ${plan.format}: ${plan.items.length} conversations, ` +
      `generating for ${plan.evaluated.length})`,
  );
  if (plan.skipped.length) print(`  skipped ${plan.skipped.length} with no assistant turn that carries loss`);

  let base: ModelPass | undefined;
  if (plan.runBase) {
    print(`Loading base model ${plan.model}...`);
    const pair = await loadModelAndTokenizer(plan.model, be, { prepare: false, hub: opts.hub, warn });
    try {
      print(`Evaluating base model`);
      base = await evaluatePass(pair.model, pair.tokenizer, plan, "base", { bar, print });
    } finally {
      pair.model.dispose();
    }
  }
  print(`Loading SFT model ${plan.sftDir}...`);
  const sftPair = await loadModelAndTokenizer(plan.sftDir, be, { prepare: false, warn });
  let sft: ModelPass;
  try {
    print(`Evaluating SFT model`);
    sft = await evaluatePass(sftPair.model, sftPair.tokenizer, plan, "SFT", { bar, print });
  } finally {
    sftPair.model.dispose();
  }

  const rows: FreeformRow[] = plan.evaluated.map((x, i) => {
    const row: FreeformRow = {
      line: x.line,
      question: x.question,
      reference: x.reference,
      sft: sft.preds[i]!,
      sftExact: sft.exact[i]!,
    };
    if (sft.scored) row.sftScore = sft.scored[i]!;
    if (base) {
      row.base = base.preds[i]!;
      row.baseExact = base.exact[i]!;
      if (base.scored) row.baseScore = base.scored[i]!;
    }
    return row;
  });
  const d = plan.decoding;
  const report: FreeformReport = {
    task: "chat",
    model: plan.model,
    checkpoint: plan.sftDir,
    testFile: plan.testFile,
    format: plan.format,
    ...(plan.scorer ? { score: scorerName(plan.scorer) } : {}),
    ...(base ? { base: base.summary } : {}),
    sft: sft.summary,
    rows,
    skipped: plan.skipped,
    settings: {
      maxSamples: plan.maxSamples,
      mask: plan.mask,
      maxNewTokens: d.maxNewTokens,
      doSample: d.doSample,
      temperature: d.temperature,
      topP: d.topP,
      repetitionPenalty: d.repetitionPenalty,
      noRepeatNgramSize: d.noRepeatNgramSize,
      backend: be.name,
      runtime: runtimeName(),
      startedAt,
    },
    seconds: (performance.now() - started) / 1000,
  };
  const paths = opts.reportBase !== undefined ? await writeFreeformReport(report, opts.reportBase) : undefined;
  return paths ? { report, paths } : { report };
}

function modelJson(s: FreeformModelSummary): Record<string, unknown> {
  return {
    exact_match: s.exactMatch,
    ...(s.score ? { score: s.score.accuracy } : {}),
    loss: s.loss,
    perplexity: s.perplexity,
    token_accuracy: s.tokenAccuracy,
    tokens: s.tokens,
    conversations: s.conversations,
    generated: s.generated,
  };
}

/**
 * The one-line JSON summary `eval.ts --json` prints last for a free-form run: `{task: "chat", exact_match
 * (the SFT model's), score?, sft: {exact_match, score?, loss, perplexity, token_accuracy, …}, base?,
 * test_file, seconds, report?}`.
 */
export function freeformSummaryJson(result: FreeformRunResult): Record<string, unknown> {
  const r = result.report;
  return {
    task: r.task,
    exact_match: r.sft.exactMatch,
    ...(r.score ? { score_name: r.score, score: r.sft.score!.accuracy } : {}),
    sft: modelJson(r.sft),
    ...(r.base ? { base: modelJson(r.base) } : {}),
    test_file: r.testFile,
    format: r.format,
    seconds: Math.round(r.seconds * 1000) / 1000,
    ...(result.paths ? { report: result.paths } : {}),
  };
}
