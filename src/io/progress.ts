/**
 * A small terminal progress bar for downloads (bytes) and training loops (steps, items).
 *
 * On a TTY it redraws one line in place (`\r`), at most every `redrawMs`:
 *
 * ```
 * pytorch_model.bin  [██████████░░░░░░░░░░]  201.3/401.2 MiB  38.2 MiB/s  ETA 5s
 * ```
 *
 * When the stream is not a TTY (CI logs, a file), it prints a plain line every `plainEveryMs` and one at the
 * end, so logs stay readable. Nothing here touches runtime-specific APIs.
 * @module
 */

import { stderr } from "node:process";

/** What the bar counts: bytes are shown as KiB/MiB/GiB, items as plain numbers with `itemName`. */
export type ProgressUnit = "bytes" | "items";

/** The part of a writable stream the bar uses (process.stderr fits). */
export interface ProgressStream {
  write(text: string): unknown;
  /** True when the stream is a terminal: the bar then redraws in place. */
  isTTY?: boolean;
  /** Terminal width, when known. */
  columns?: number;
}

/** Options of {@link ProgressBar}. */
export interface ProgressBarOptions {
  /** The amount that means "done" (bytes or items); 0 or less means unknown (no bar, no ETA). */
  total: number;
  unit: ProgressUnit;
  /** Shown at the start of the line. */
  label: string;
  /** Where to draw; defaults to process.stderr. */
  stream?: ProgressStream;
  /** Name of one item for unit "items", e.g. "steps" (default "it"). */
  itemName?: string;
  /** Minimum time between redraws on a TTY (default 100 ms). */
  redrawMs?: number;
  /** Time between plain lines when the stream is not a TTY (default 5000 ms). */
  plainEveryMs?: number;
  /** Clock in milliseconds, for tests (default performance.now). */
  now?: () => number;
}

const KIB = 1024;

/** Formats a byte count with a binary unit: `512 B`, `1.5 KiB`, `401.2 MiB`, `1.20 GiB`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "? B";
  if (n < KIB) return `${Math.round(n)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / KIB;
  let i = 0;
  while (v >= KIB && i < units.length - 1) {
    v /= KIB;
    i++;
  }
  return `${v.toFixed(v >= 10 ? 1 : 2)} ${units[i]}`;
}

/** Formats seconds as `45s`, `3m05s` or `2h03m`; unknown or infinite as `?`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/**
 * A progress bar for one task: call {@link ProgressBar.update} as work is done and {@link ProgressBar.finish}
 * at the end. The rate is measured over the last few seconds, so it follows changes in speed.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar({ total: 1000, unit: "items", itemName: "steps", label: "train" });
 * for (let step = 1; step <= 1000; step++) bar.update(step, `loss ${loss.toFixed(3)}`);
 * bar.finish();
 * ```
 */
export class ProgressBar {
  #total: number;
  #unit: ProgressUnit;
  #label: string;
  #stream: ProgressStream;
  #itemName: string;
  #redrawMs: number;
  #plainEveryMs: number;
  #now: () => number;
  #start: number;
  #lastDraw = -Infinity;
  #lastLineLength = 0;
  #lastDrawnDone = -1;
  #done = 0;
  #extra = "";
  #finished = false;
  /** Recent (time, done) samples for the rate, oldest first. */
  #samples: Array<[number, number]> = [];

  constructor(opts: ProgressBarOptions) {
    this.#total = opts.total;
    this.#unit = opts.unit;
    this.#label = opts.label;
    this.#stream = opts.stream ?? stderr;
    this.#itemName = opts.itemName ?? "it";
    this.#redrawMs = opts.redrawMs ?? 100;
    this.#plainEveryMs = opts.plainEveryMs ?? 5000;
    this.#now = opts.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#samples.push([this.#start, 0]);
  }

  /** The total, which may be raised or set later when it was unknown. */
  get total(): number {
    return this.#total;
  }
  set total(value: number) {
    this.#total = value;
  }

  /** Records progress (`done` is cumulative, not an increment) and redraws when it is time. */
  update(done: number, extra?: string): void {
    if (this.#finished) return;
    const t = this.#now();
    this.#done = done;
    if (extra !== undefined) this.#extra = extra;
    this.#samples.push([t, done]);
    // Keep about five seconds of history (and at least two samples) for the rate.
    while (this.#samples.length > 2 && t - this.#samples[0]![0] > 5000) this.#samples.shift();
    const tty = this.#stream.isTTY === true;
    const complete = this.#total > 0 && done >= this.#total;
    if (complete || t - this.#lastDraw >= (tty ? this.#redrawMs : this.#plainEveryMs)) this.#draw(t);
  }

  /**
   * Prints a line of text without breaking the bar: on a TTY the bar is wiped, the text printed, and the bar
   * drawn again below it; otherwise the text is just written as a line. `print` writes the text somewhere
   * else than the bar's stream (the training's messages go to stdout, the bar to stderr): it gets the message
   * without its newline, as console.log takes it.
   */
  log(message: string, print?: (line: string) => void): void {
    const text = message.endsWith("\n") ? message : `${message}\n`;
    const write = () => print ? print(text.slice(0, -1)) : this.#stream.write(text);
    if (this.#stream.isTTY !== true || this.#finished || this.#lastLineLength === 0) {
      write();
      return;
    }
    const wipe = `\r${" ".repeat(this.#lastLineLength)}\r`;
    if (print) {
      this.#stream.write(wipe);
      print(text.slice(0, -1));
    } else this.#stream.write(wipe + text);
    this.#lastLineLength = 0;
    this.#draw(this.#now());
  }

  /** Draws the final state and ends the line. Later updates are ignored. */
  finish(extra?: string): void {
    if (this.#finished) return;
    if (extra !== undefined) this.#extra = extra;
    const t = this.#now();
    // On a TTY redraw the line with the final numbers and end it. Without a TTY print a last line unless
    // the last plain line already showed the final state.
    if (this.#stream.isTTY === true) {
      this.#draw(t);
      this.#stream.write("\n");
    } else if (this.#lastDrawnDone !== this.#done || extra !== undefined) {
      this.#draw(t);
    }
    this.#finished = true;
  }

  /** Items (or bytes) per second over the recent window; overall average when the window is too short. */
  rate(): number {
    const first = this.#samples[0]!;
    const last = this.#samples[this.#samples.length - 1]!;
    const dt = (last[0] - first[0]) / 1000;
    if (dt > 0.2) return (last[1] - first[1]) / dt;
    const all = (this.#now() - this.#start) / 1000;
    return all > 0 ? this.#done / all : 0;
  }

  /** The line as it would be drawn now (without `\r` or newline), for tests and custom output. */
  render(width = 100): string {
    const rate = this.rate();
    const fmt = (n: number) => this.#unit === "bytes" ? formatBytes(n) : String(Math.round(n));
    const known = this.#total > 0;
    const amount = this.#unit === "bytes"
      ? `${known ? `${fmt(this.#done)}/${fmt(this.#total)}` : fmt(this.#done)}`
      : `${known ? `${fmt(this.#done)}/${fmt(this.#total)}` : fmt(this.#done)} ${this.#itemName}`;
    const speed = this.#unit === "bytes"
      ? `${formatBytes(rate)}/s`
      : `${rate >= 10 ? rate.toFixed(1) : rate.toFixed(2)} ${this.#itemName}/s`;
    const remaining = known && rate > 0 ? (this.#total - this.#done) / rate : NaN;
    const eta = this.#done >= this.#total && known
      ? `in ${formatDuration((this.#now() - this.#start) / 1000)}`
      : `ETA ${formatDuration(remaining)}`;
    const pct = known ? `${Math.min(100, Math.floor((100 * this.#done) / this.#total))}%`.padStart(4) : "";
    const numbers = [amount, speed, eta].join("  ");
    // Narrow terminals lose, in order: the bar, the extra text, the end of the label; never the numbers.
    let label = this.#label;
    let extra = this.#extra;
    const line = (bar: string) => [`${label}  ${pct}`.trim() + bar, numbers, extra].filter((s) => s !== "").join("  ");
    const plain = line("");
    const room = width - plain.length - 3;
    if (known && room >= 10) {
      const cells = Math.min(30, room);
      const filled = Math.min(cells, Math.floor((cells * this.#done) / this.#total));
      return line(` [${"█".repeat(filled)}${"░".repeat(cells - filled)}]`);
    }
    if (plain.length <= width) return plain;
    extra = "";
    const over = line("").length - width;
    if (over > 0) {
      const keep = label.length - over - 1;
      label = keep >= 8 ? `${label.slice(0, keep)}…` : "";
    }
    return line("");
  }

  #draw(t: number): void {
    this.#lastDraw = t;
    this.#lastDrawnDone = this.#done;
    if (this.#stream.isTTY === true) {
      const columns = this.#stream.columns;
      const width = Math.max(40, (columns !== undefined && columns > 0 ? columns : 100) - 1);
      let line = this.render(width);
      if (line.length > width) line = line.slice(0, width);
      // Pad with spaces to wipe a longer previous line.
      const pad = Math.max(0, this.#lastLineLength - line.length);
      this.#lastLineLength = line.length;
      this.#stream.write(`\r${line}${" ".repeat(pad)}`);
    } else {
      this.#stream.write(`${this.render(120)}\n`);
    }
  }
}
