/**
 * The one comparison helper every numeric test uses: `|a − e| ≤ atol + rtol·|e|` elementwise, reporting
 * the max abs error and the first mismatches. Each caller states its own tolerance and why.
 * @module
 */

/** Result of {@link compareArrays}. */
export interface CompareResult {
  ok: boolean;
  maxAbsErr: number;
  /** Index of the max abs error. */
  argmax: number;
  /** Number of elements outside the tolerance. */
  bad: number;
  /** Up to 5 mismatches as `[index, actual, expected]`. */
  firstMismatches: [number, number, number][];
}

/** Tolerances for {@link compareArrays}. */
export interface Tolerance {
  atol: number;
  rtol?: number;
  /** Only compare where `where(i)` is true. */
  where?: (i: number) => boolean;
}

/** Compare `actual` to `expected` elementwise. NaN in either is a mismatch. */
export function compareArrays(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
): CompareResult {
  if (actual.length !== expected.length) {
    throw new Error(`Cannot compare arrays: lengths differ (${actual.length} vs ${expected.length})`);
  }
  const rtol = tol.rtol ?? 0;
  let maxAbsErr = 0, argmax = -1, bad = 0;
  const firstMismatches: [number, number, number][] = [];
  for (let i = 0; i < actual.length; i++) {
    if (tol.where && !tol.where(i)) continue;
    const a = actual[i]!, e = expected[i]!;
    const err = Math.abs(a - e);
    if (!(err <= tol.atol + rtol * Math.abs(e))) {
      bad++;
      if (firstMismatches.length < 5) firstMismatches.push([i, a, e]);
    }
    if (err > maxAbsErr || Number.isNaN(err)) {
      maxAbsErr = Number.isNaN(err) ? Infinity : err;
      argmax = i;
    }
  }
  return { ok: bad === 0, maxAbsErr, argmax, bad, firstMismatches };
}

/** Throws a readable error when {@link compareArrays} fails. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what = "values",
): CompareResult {
  const r = compareArrays(actual, expected, tol);
  if (!r.ok) {
    const mm = r.firstMismatches.map(([i, a, e]) => `[${i}] ${a} vs ${e}`).join(", ");
    throw new Error(
      `${what}: ${r.bad}/${actual.length} outside atol ${tol.atol} rtol ${
        tol.rtol ?? 0
      }; max abs err ${r.maxAbsErr} at ${r.argmax}; first: ${mm}`,
    );
  }
  return r;
}

/** Max abs value of an array (for tolerances relative to a tensor's scale). */
export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}
