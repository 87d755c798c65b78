/**
 * A one-line sparkline of a series, on the same resampling and block characters as the console chart of
 * src/train/plot.ts (only the tests draw one).
 * @module
 */

import { BLOCKS, resample } from "../../src/train/plot.ts";

/**
 * A one-line chart of `values` in block characters `▁▂▃▄▅▆▇█`, at most `width` characters (longer series
 * are averaged into buckets); non-finite values show as spaces.
 */
export function sparkline(values: readonly number[], width = 60): string {
  const v = resample(values, Math.max(1, width));
  const fin = v.filter(Number.isFinite);
  if (fin.length === 0) return " ".repeat(v.length);
  const lo = Math.min(...fin), hi = Math.max(...fin);
  return v.map((x) => {
    if (!Number.isFinite(x)) return " ";
    const level = hi > lo ? Math.round((x - lo) / (hi - lo) * 7) : 3;
    return BLOCKS[level]!;
  }).join("");
}
