/**
 * The values of a JSONL file, as the notebook's `load_jsonl` (the library reads entries with their line
 * numbers, `readJsonlEntries`, and checks them as records).
 * @module
 */

import { readJsonlEntries, type ReadJsonlOptions } from "../../src/data/jsonl.ts";

/** Read a JSONL file (UTF-8, BOM allowed, blank lines skipped) into its values, as the notebook's `load_jsonl`. */
export async function readJsonl(path: string, opts: ReadJsonlOptions = {}): Promise<unknown[]> {
  return (await readJsonlEntries(path, opts)).map((e) => e.value);
}
