/**
 * Training metrics: a JSONL log (one JSON object per line, written straight to the file descriptor so a
 * crash loses at most the line being written), reading it back, and the console lines in the notebook's
 * style (`Step   20 | Loss: 1.2345 | LR: 2.30e-05`, extended with grad norm, token accuracy, throughput,
 * supervised tokens, tokens seen and ETA). Also the Python-compatible number formatting (`f"{x:.4f}"`, `f"{x:.2e}"`, which round half to
 * even on the exact binary value where JavaScript's `toFixed`/`toExponential` round ties up and write
 * `5.00e-5`) and an atomic file writer, which the plot and report modules share.
 * @module
 */

import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { formatDuration } from "../io/progress.ts";
import { atomicWriteFile } from "../io/atomic.ts";

// ---------------------------------------------------------------------------------------------------------
// Python-compatible number formatting

/** The exact value of a finite double `|x|` as `n·10^-k` (n a BigInt): every double is a finite decimal. */
function exactDecimal(x: number): { n: bigint; k: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const hi = view.getUint32(0), lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp2: number;
  if (biased === 0) exp2 = -1074; // subnormal (or zero)
  else {
    mant |= 1n << 52n;
    exp2 = biased - 1075;
  }
  if (exp2 >= 0) return { n: mant << BigInt(exp2), k: 0 };
  // mant·2^-e = mant·5^e / 10^e
  return { n: mant * 5n ** BigInt(-exp2), k: -exp2 };
}

/** `n / 10^drop`, rounded half to even (Python's float formatting rounds the exact value this way). */
function roundHalfEven(n: bigint, drop: number): bigint {
  if (drop <= 0) return n * 10n ** BigInt(-drop);
  const d = 10n ** BigInt(drop);
  let q = n / d;
  const r = n % d;
  const half = d / 2n;
  if (r > half || (r === half && q % 2n === 1n)) q += 1n;
  return q;
}

function special(x: number): string | null {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  return null;
}

/** Python's `f"{x:.{digits}f}"`: fixed point, round half to even on the exact value, "nan"/"inf". */
export function formatFixed(x: number, digits: number): string {
  const s = special(x);
  if (s !== null) return s;
  const sign = x < 0 || Object.is(x, -0) ? "-" : "";
  const { n, k } = exactDecimal(x);
  const q = roundHalfEven(n, k - digits).toString().padStart(digits + 1, "0");
  if (digits === 0) return sign + q;
  return `${sign}${q.slice(0, q.length - digits)}.${q.slice(q.length - digits)}`;
}

/** Python's `f"{x:.{digits}e}"`: `5.00e-05`, exponent of at least two digits, round half to even. */
export function formatExp(x: number, digits: number): string {
  const s = special(x);
  if (s !== null) return s;
  const sign = x < 0 || Object.is(x, -0) ? "-" : "";
  let mantissa: string;
  let e10: number;
  if (x === 0) {
    mantissa = "0".repeat(digits + 1);
    e10 = 0;
  } else {
    const { n, k } = exactDecimal(x);
    const len = n.toString().length;
    e10 = len - 1 - k;
    let q = roundHalfEven(n, len - (digits + 1));
    if (q.toString().length > digits + 1) { // 9.995 → 10.00: carry into a new digit
      q /= 10n;
      e10 += 1;
    }
    mantissa = q.toString();
  }
  const m = digits === 0 ? mantissa : `${mantissa[0]}.${mantissa.slice(1)}`;
  const es = `${e10 < 0 ? "-" : "+"}${String(Math.abs(e10)).padStart(2, "0")}`;
  return `${sign}${m}e${es}`;
}

/** An integer with `,` between thousands (Python's `f"{n:,}"`; locale independent). */
export function groupThousands(n: number): string {
  const s = String(Math.round(Math.abs(n)));
  return (n < 0 ? "-" : "") + s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// ---------------------------------------------------------------------------------------------------------
// The JSONL log

/** One logged optimizer step. `step` counts from 1 (as the notebook's `step` after `step += 1`). */
export interface TrainMetrics {
  type: "train";
  step: number;
  /** Epoch, counted from 1 (the notebook prints `epoch+1`). */
  epoch: number;
  /** The step's loss (`loss.item()`). */
  loss: number;
  /** `scheduler.get_last_lr()[0]` after the step (what the notebook prints). */
  lr: number;
  /** Global gradient norm before clipping (what `clip_grad_norm_` returns). */
  grad_norm: number;
  /** Tokens per second since the previous log line (the trainer counts non-padding tokens). */
  tokens_per_s: number;
  /** Supervised tokens (labels that are not -100) in the steps since the previous log line. */
  supervised_tokens: number;
  /** Tokens (non-padding) trained on since the run started, resumes included (TRL's `num_tokens`). */
  num_tokens?: number;
  /**
   * The fraction of the supervised positions since the previous log line whose argmax logit is the target
   * (TRL's `mean_token_accuracy`).
   */
  mean_token_accuracy?: number;
  /** Seconds since training started. */
  elapsed_s: number;
}

/** One validation pass (the notebook's end-of-epoch `evaluate_loss(val_dataloader)`). */
export interface ValMetrics {
  type: "val";
  /** Epoch, counted from 1. */
  epoch: number;
  val_loss: number;
  /** The optimizer step count when validation ran (places the point on the loss curve). */
  step?: number;
  /** The epoch's mean training loss (the notebook's `avg_epoch_loss`). */
  train_loss?: number;
  elapsed_s?: number;
}

/** A line of the metrics log. */
export type MetricsEntry = TrainMetrics | ValMetrics;

/**
 * Appends metrics to a JSONL file, one object per line. Each line goes to the OS with one `write` call
 * as it is logged (no buffering in the process), so a crash or Ctrl-C loses at most that line.
 * Non-finite numbers are written as `null` (JSON has no NaN) and read back as NaN.
 */
export class MetricsLog {
  #fd: number | null;
  /** The file being written. */
  readonly path: string;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  /** Opens (creating directories as needed) `path`; `append: false` (the default) starts a new file. */
  static open(path: string, opts: { append?: boolean } = {}): MetricsLog {
    mkdirSync(dirname(path), { recursive: true });
    return new MetricsLog(path, openSync(path, opts.append ? "a" : "w"));
  }

  /** Writes one entry as a line. */
  log(entry: MetricsEntry): void {
    if (this.#fd === null) throw new Error(`Cannot write metrics: ${this.path} is closed`);
    writeSync(this.#fd, JSON.stringify(entry) + "\n");
  }

  /** Logs a training step (adds `type: "train"`). */
  train(fields: Omit<TrainMetrics, "type">): void {
    this.log({ type: "train", ...fields });
  }

  /** Logs a validation pass (adds `type: "val"`). */
  val(fields: Omit<ValMetrics, "type">): void {
    this.log({ type: "val", ...fields });
  }

  /** Closes the file; further logging throws. Closing twice is harmless. */
  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }
}

function num(v: unknown): number {
  return typeof v === "number" ? v : NaN; // null (a non-finite number when written) → NaN
}

/**
 * Reads a metrics log back. Blank lines are skipped; an unparsable last line (a write cut short by a crash)
 * is dropped; an unparsable line elsewhere throws, naming the file and line. Lines without `type` count as
 * "val" when they have `val_loss`, else as "train".
 */
export async function readMetrics(path: string): Promise<MetricsEntry[]> {
  const lines = (await readFile(path, "utf8")).split("\n");
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === "") lines.pop();
  const out: MetricsEntry[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      if (i === lines.length - 1) break;
      throw new Error(`Cannot read metrics ${path}: line ${i + 1} is not JSON (${(e as Error).message})`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new Error(`Cannot read metrics ${path}: line ${i + 1} is not a JSON object`);
    }
    const o = obj as Record<string, unknown>;
    const type = o.type ?? ("val_loss" in o ? "val" : "train");
    if (type === "val") {
      out.push({
        ...o,
        type: "val",
        epoch: num(o.epoch),
        val_loss: num(o.val_loss),
        ...(o.step === undefined ? {} : { step: num(o.step) }),
        ...(o.train_loss === undefined ? {} : { train_loss: num(o.train_loss) }),
        ...(o.elapsed_s === undefined ? {} : { elapsed_s: num(o.elapsed_s) }),
      } as ValMetrics);
    } else if (type === "train") {
      out.push({
        ...o,
        type: "train",
        step: num(o.step),
        epoch: num(o.epoch),
        loss: num(o.loss),
        lr: num(o.lr),
        grad_norm: num(o.grad_norm),
        tokens_per_s: num(o.tokens_per_s),
        supervised_tokens: num(o.supervised_tokens),
        ...(o.num_tokens === undefined ? {} : { num_tokens: num(o.num_tokens) }),
        ...(o.mean_token_accuracy === undefined ? {} : { mean_token_accuracy: num(o.mean_token_accuracy) }),
        elapsed_s: num(o.elapsed_s),
      } as TrainMetrics);
    } else {
      throw new Error(`Cannot read metrics ${path}: line ${i + 1} has unknown type ${JSON.stringify(type)}`);
    }
  }
  return out;
}

/**
 * Make a metrics log fit a run resumed at `step`: a last line cut short by a kill mid-write is dropped, and
 * so are the lines of steps after `step` (logged before the crash, they will be logged again). The file is
 * rewritten atomically; a missing file is left missing. Returns what was dropped.
 */
export async function repairMetrics(path: string, step: number): Promise<{ torn: boolean; later: number }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return { torn: false, later: 0 };
    throw e;
  }
  const lines = text.split("\n");
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === "") lines.pop();
  let torn = false;
  if (lines.length > 0) {
    try {
      JSON.parse(lines[lines.length - 1]!);
    } catch {
      lines.pop();
      torn = true;
    }
  }
  const kept = lines.filter((l) => {
    if (l.trim() === "") return false;
    try {
      const o = JSON.parse(l) as { step?: unknown };
      return !(typeof o.step === "number" && o.step > step);
    } catch {
      return true; // a bad line in the middle: readMetrics names it
    }
  });
  const later = lines.filter((l) => l.trim() !== "").length - kept.length;
  if (torn || later > 0) await atomicWriteFile(path, kept.length ? kept.join("\n") + "\n" : "");
  return { torn, later };
}

/** A point of a loss curve. */
export interface LossPoint {
  step: number;
  loss: number;
}

/**
 * The loss curves in a log: train loss per logged step, and val loss per epoch placed at the step it
 * was measured (its `step`, else the last train step logged before it, else 0).
 */
export function lossSeries(entries: readonly MetricsEntry[]): { train: LossPoint[]; val: LossPoint[] } {
  const train: LossPoint[] = [];
  const val: LossPoint[] = [];
  let lastStep = 0;
  for (const e of entries) {
    if (e.type === "train") {
      train.push({ step: e.step, loss: e.loss });
      lastStep = e.step;
    } else {
      val.push({ step: e.step ?? lastStep, loss: e.val_loss });
    }
  }
  return { train, val };
}

// ---------------------------------------------------------------------------------------------------------
// Console lines

export { formatDuration };

/** What {@link formatStepLine} shows; everything after `lr` is optional and shown only when given. */
export interface StepLineOptions {
  step: number;
  loss: number;
  lr: number;
  /** Total steps planned: shows `Step   20/1000`. */
  totalSteps?: number;
  gradNorm?: number;
  tokensPerS?: number;
  supervisedTokens?: number;
  /** Mean token accuracy (0 … 1) since the previous line. */
  accuracy?: number;
  /** Tokens trained on so far. */
  tokensSeen?: number;
  /** Seconds left. */
  etaS?: number;
}

/**
 * The notebook's `f"Step {step:4d} | Loss: {loss:.4f} | LR: {lr:.2e}"`, extended:
 * `Step   20 | Loss: 1.2345 | LR: 2.30e-05 | Grad: 0.873 | Acc: 0.5120 | 1,234 tok/s | Sup: 456 | Seen: 9,876 |
 * ETA 3m05s` (each part after the LR only when given).
 */
export function formatStepLine(o: StepLineOptions): string {
  const step = String(o.step).padStart(4, " ") + (o.totalSteps === undefined ? "" : `/${o.totalSteps}`);
  const parts = [`Step ${step}`, `Loss: ${formatFixed(o.loss, 4)}`, `LR: ${formatExp(o.lr, 2)}`];
  if (o.gradNorm !== undefined) parts.push(`Grad: ${formatFixed(o.gradNorm, 3)}`);
  if (o.accuracy !== undefined) parts.push(`Acc: ${formatFixed(o.accuracy, 4)}`);
  if (o.tokensPerS !== undefined) parts.push(`${groupThousands(o.tokensPerS)} tok/s`);
  if (o.supervisedTokens !== undefined) parts.push(`Sup: ${groupThousands(o.supervisedTokens)}`);
  if (o.tokensSeen !== undefined) parts.push(`Seen: ${groupThousands(o.tokensSeen)}`);
  if (o.etaS !== undefined) parts.push(`ETA ${formatDuration(o.etaS)}`);
  return parts.join(" | ");
}

/** A validation line between the step lines (`--eval-every`), aligned with {@link formatStepLine}. */
export function formatValLine(o: { step: number; totalSteps?: number; valLoss: number }): string {
  const step = String(o.step).padStart(4, " ") + (o.totalSteps === undefined ? "" : `/${o.totalSteps}`);
  return `Step ${step} | Val loss: ${formatFixed(o.valLoss, 4)}`;
}

/** The notebook's end-of-epoch block (with its leading blank line); no val line for a run without validation data. */
export function formatEpochSummary(o: { epoch: number; epochs: number; trainLoss: number; valLoss?: number }): string {
  return [
    "",
    `Epoch ${o.epoch}/${o.epochs} completed`,
    `  Train loss: ${formatFixed(o.trainLoss, 4)}`,
    ...(o.valLoss === undefined ? [] : [`  Val loss:   ${formatFixed(o.valLoss, 4)}`]),
  ].join("\n");
}
