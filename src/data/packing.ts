/**
 * Packing: several tokenized SFT examples share one row of at most `maxLength` tokens, so that a batch
 * holds real tokens where it would otherwise hold padding. The examples of a row do not see each other:
 * each token carries a segment id (1, 2, … for the first, second, … example of its row) that the attention
 * uses as a block-diagonal causal mask (a query sees only earlier keys of its own segment), and a position id
 * that restarts at 0 at each example's first token, so every example is embedded exactly as it is alone.
 *
 * Rows are filled best-fit decreasing, as TRL's `packing_strategy="bfd"`: the examples sorted by length,
 * longest first (ties in dataset order), each goes into the open row with the least room that still fits it,
 * or opens a new row. No example is split across rows (examples are already truncated to `maxLength` when
 * tokenized), and a row's padding is only at its end (added by `collate`).
 *
 * Labels: each example's first label becomes −100. Its first token is never a target when the example is
 * alone (the labels are shifted by one: the logits at t predict the token at t+1, and no logit comes before
 * position 0), and in a row the token before it belongs to the previous example, which must not learn to
 * predict the next example's start. So the loss and the gradients of a packed batch are those of the same
 * examples unpacked, up to float rounding.
 * @module
 */

import type { SftExample } from "./sft_dataset.ts";

/** A row of packed examples: an {@link SftExample} with per-token segment and position ids. */
export interface PackedRow extends SftExample {
  /** Per token: 1 + the index of its example within the row (0 is kept for padding). */
  segmentIds: number[];
  /** Per token: its position within its own example (0 at each example's first token). */
  positionIds: number[];
  /** Indices (into the packed list) of the examples of this row, in row order. */
  sources: number[];
}

/** What {@link packExamples} did, for the training header. */
export interface PackingSummary {
  examples: number;
  rows: number;
  /** Real tokens over rows · maxLength: how full the rows are. */
  fill: number;
}

/**
 * Pack `examples` into rows of at most `maxLength` tokens, best-fit decreasing (see the module doc).
 * The rows are ordered by when they were opened (the first holds the longest example). An example longer
 * than `maxLength` is an error: tokenization truncates to `maxLength`, so it means the two disagree.
 */
export function packExamples(examples: readonly SftExample[], maxLength: number): PackedRow[] {
  if (!(Number.isInteger(maxLength) && maxLength > 0)) {
    throw new Error(`Cannot pack examples: maxLength must be a positive integer, got ${maxLength}`);
  }
  const order = examples.map((_, i) => i);
  // longest first; the sort is stable, so equal lengths keep dataset order
  order.sort((a, b) => examples[b]!.inputIds.length - examples[a]!.inputIds.length);
  const rows: number[][] = [];
  const room: number[] = [];
  // open rows by room left (ascending), for the best fit: the first with room ≥ the example's length
  const byRoom: number[] = [];
  for (const i of order) {
    const n = examples[i]!.inputIds.length;
    if (n > maxLength) {
      throw new Error(`Cannot pack example ${i + 1}: it has ${n} tokens, more than max length ${maxLength}`);
    }
    if (n === 0) continue;
    const k = lowerBound(byRoom, (r) => room[r]! >= n);
    let r: number;
    if (k < byRoom.length) {
      r = byRoom[k]!;
      byRoom.splice(k, 1);
    } else {
      r = rows.length;
      rows.push([]);
      room.push(maxLength);
    }
    rows[r]!.push(i);
    room[r]! -= n;
    // back in the sorted list (rows with equal room keep the order they were opened in)
    byRoom.splice(lowerBound(byRoom, (q) => room[q]! > room[r]! || (room[q] === room[r] && q > r)), 0, r);
  }
  return rows.map((members) => packRow(examples, members));
}

/** The first index of the sorted `list` where `pred` holds (pred is false, then true along the list). */
function lowerBound(list: readonly number[], pred: (x: number) => boolean): number {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pred(list[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** One row from the examples `members` (indices into `examples`), in that order. */
function packRow(examples: readonly SftExample[], members: readonly number[]): PackedRow {
  const row: PackedRow = { inputIds: [], labels: [], supervised: 0, segmentIds: [], positionIds: [], sources: [] };
  members.forEach((i, k) => {
    const e = examples[i]!;
    row.inputIds.push(...e.inputIds);
    // the first token is no target: nothing before it in its own example predicts it
    row.labels.push(-100, ...e.labels.slice(1));
    for (let t = 0; t < e.inputIds.length; t++) {
      row.segmentIds.push(k + 1);
      row.positionIds.push(t);
    }
    row.sources.push(i);
  });
  row.supervised = row.labels.filter((l) => l !== -100).length;
  return row;
}

/** How many rows, and how full they are. */
export function packingSummary(examples: number, rows: readonly SftExample[], maxLength: number): PackingSummary {
  const tokens = rows.reduce((n, r) => n + r.inputIds.length, 0);
  return { examples, rows: rows.length, fill: rows.length ? tokens / (rows.length * maxLength) : 0 };
}
