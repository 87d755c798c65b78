/**
 * An evaluation summary as the notebook prints it, a dict of accuracies (what the tests compare with).
 * @module
 */

import type { Summary } from "../../src/eval/metrics.ts";

/** The summary as the notebook's dict `{category: accuracy, …, "overall": accuracy}`. */
export function summaryRecord(s: Summary): Record<string, number> {
  return Object.fromEntries([...s.categories.map((c) => [c.category, c.accuracy]), ["overall", s.overall.accuracy]]);
}
