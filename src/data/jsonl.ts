/**
 * JSON Lines in and out, as the notebook reads and writes its data: `load_jsonl` opens the file as
 * `utf-8-sig` (a byte-order mark is allowed) and skips lines that are blank after `strip()`;
 * `_write_jsonl` writes `json.dumps(record, ensure_ascii=False) + "\n"` per record, which
 * {@link pythonJsonDumps} reproduces byte for byte (Python's `", "` and `": "` separators, non-ASCII kept).
 *
 * Errors name the file and the 1-based line: `data/x.jsonl:12: invalid JSON (…)`.
 * @module
 */

import { readFile } from "node:fs/promises";

/** One parsed line of a JSONL file, with its 1-based line number (for error messages). */
export interface JsonlEntry {
  line: number;
  value: unknown;
}

/** Options for reading JSONL. */
export interface ReadJsonlOptions {
  /** Return `[]` for a file without records instead of failing (default false). */
  allowEmpty?: boolean;
}

/** The evaluation metrics the notebook's `score_prediction` knows. */
export type Metric = "text" | "json" | "numeric";
/** The metrics, for validation. */
export const METRICS: readonly Metric[] = ["text", "json", "numeric"];

/** One SFT record as the notebook's data files hold it. */
export interface SftRecord {
  instruction: string;
  response: string;
  category: string;
  metric: Metric;
  expected: string;
}

/**
 * Parse JSONL text. A leading BOM is dropped; lines are split as Python's text mode does
 * (`\n`, `\r\n` or `\r`); lines that are blank after trimming are skipped. `file` is only used in messages.
 */
export function parseJsonl(text: string, file: string, opts: ReadJsonlOptions = {}): JsonlEntry[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const entries: JsonlEntry[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new Error(`${file}:${i + 1}: invalid JSON (${why}): ${snippet(raw)}`);
    }
    entries.push({ line: i + 1, value });
  }
  if (entries.length === 0 && !opts.allowEmpty) {
    throw new Error(`${file}: no records: the file is empty or has only blank lines`);
  }
  return entries;
}

/** Read a JSONL file (UTF-8, BOM allowed) into its entries with line numbers. */
export async function readJsonlEntries(path: string, opts: ReadJsonlOptions = {}): Promise<JsonlEntry[]> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new Error(`Cannot read JSONL file: ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const at = firstBadUtf8(bytes);
    const { line, column } = lineColumn(bytes, at);
    throw new Error(
      `${path}:${line}:${column}: not valid UTF-8 (byte 0x${
        (bytes[at] ?? 0).toString(16).padStart(2, "0")
      } at line ${line}, column ${column}; save the file as UTF-8)`,
    );
  }
  return parseJsonl(text, path, opts);
}

/**
 * Check that every entry is a JSON object holding each of `requiredFields` as a string, and return the
 * objects. The first failure throws, naming file, line and field: `x.jsonl:3: missing field "response"`.
 */
export function validateRecords(
  entries: readonly JsonlEntry[],
  file: string,
  requiredFields: readonly string[],
): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const { line, value } of entries) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Error(`${file}:${line}: expected a JSON object, got ${describe(value)}`);
    }
    const rec = value as Record<string, unknown>;
    for (const field of requiredFields) {
      if (!(field in rec)) {
        throw new Error(
          `${file}:${line}: missing field "${field}" (fields present: ${Object.keys(rec).join(", ") || "none"})`,
        );
      }
      if (typeof rec[field] !== "string") {
        throw new Error(`${file}:${line}: field "${field}" must be a string, got ${describe(rec[field])}`);
      }
    }
    out.push(rec);
  }
  return out;
}

/** Which fields {@link readSftRecords} requires: training needs instruction/response, evaluation the rest. */
export type SftPurpose = "train" | "eval" | "both";

const SFT_FIELDS: Record<SftPurpose, readonly string[]> = {
  train: ["instruction", "response"],
  eval: ["instruction", "category", "metric", "expected"],
  both: ["instruction", "response", "category", "metric", "expected"],
};

/**
 * Read SFT records. With `purpose` "both" (default) every record needs instruction, response,
 * category, metric and expected, as the notebook's files have. With "train" only instruction and
 * response are required; with "eval" instruction, category, metric and expected. Fields that are not
 * required but missing get defaults: category "general", metric "text", expected = response,
 * response = expected. A metric, when present, must be one of text, json, numeric; other extra fields
 * are ignored.
 */
export async function readSftRecords(path: string, opts: { purpose?: SftPurpose } = {}): Promise<SftRecord[]> {
  return (await readSftRecordLines(path, opts)).records;
}

/** {@link readSftRecords}, with each record's line number in the file. */
export async function readSftRecordLines(
  path: string,
  opts: { purpose?: SftPurpose } = {},
): Promise<{ records: SftRecord[]; lines: number[] }> {
  const purpose = opts.purpose ?? "both";
  const entries = await readJsonlEntries(path);
  const recs = validateRecords(entries, path, SFT_FIELDS[purpose]);
  const lines = entries.map((e) => e.line);
  const records = recs.map((r, i) => {
    const line = entries[i]!.line;
    for (const f of ["instruction", "response", "category", "metric", "expected"]) {
      if (f in r && typeof r[f] !== "string") {
        throw new Error(`${path}:${line}: field "${f}" must be a string, got ${describe(r[f])}`);
      }
    }
    const metric = (r.metric ?? "text") as string;
    if (!(METRICS as readonly string[]).includes(metric)) {
      throw new Error(`${path}:${line}: field "metric" must be one of ${METRICS.join(", ")}, got "${metric}"`);
    }
    const response = (r.response ?? r.expected) as string;
    return {
      instruction: r.instruction as string,
      response,
      category: (r.category ?? "general") as string,
      metric: metric as Metric,
      expected: (r.expected ?? response) as string,
    };
  });
  return { records, lines };
}

/**
 * `json.dumps(value, ensure_ascii=False)` with Python's defaults: `", "` between items, `": "` after
 * keys, non-ASCII characters kept, `"` `\` and control characters escaped (`\n`, `\u001f`, …).
 * Objects keep their key order. Integers print as integers; other numbers as JS prints them (Python's
 * float repr agrees for finite values except for exponent forms such as 1e+21 vs 1e21).
 */
export function pythonJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
    return Number.isInteger(value) && Math.abs(value) < 1e16 ? value.toFixed(0) : String(value);
  }
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return "[" + value.map(pythonJsonDumps).join(", ") + "]";
  if (typeof value === "object") {
    const parts = Object.entries(value as Record<string, unknown>).map(([k, v]) =>
      JSON.stringify(k) + ": " + pythonJsonDumps(v)
    );
    return "{" + parts.join(", ") + "}";
  }
  throw new Error(`Cannot serialise to JSON: unsupported type ${typeof value}`);
}

/** Records as JSONL text in the notebook's `_write_jsonl` format: one {@link pythonJsonDumps} line each. */
export function toJsonl(records: readonly unknown[]): string {
  let s = "";
  for (const r of records) s += pythonJsonDumps(r) + "\n";
  return s;
}

function snippet(line: string): string {
  return line.length > 80 ? JSON.stringify(line.slice(0, 80)) + "…" : JSON.stringify(line);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `a string ${snippet(v)}`;
  return `${typeof v} ${String(v)}`;
}

/** The 1-based line and column (in characters) of byte `at`, counting lines as Python's text mode does. */
function lineColumn(bytes: Uint8Array, at: number): { line: number; column: number } {
  let lineStart = 0, line = 1;
  for (let i = 0; i < at; i++) {
    const b = bytes[i]!;
    if (b === 0x0a || (b === 0x0d && bytes[i + 1] !== 0x0a)) {
      line++;
      lineStart = i + 1;
    }
  }
  const before = new TextDecoder("utf-8").decode(bytes.subarray(lineStart, at)); // a BOM is dropped here
  return { line, column: [...before].length + 1 };
}

function firstBadUtf8(bytes: Uint8Array): number {
  // binary search for the longest prefix that decodes in stream mode (a cut-off trailing sequence is fine)
  let lo = 0;
  let hi = bytes.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid;
    }
  }
  // that prefix may end inside the bad sequence (its lead byte and up to two more): back up to where it starts
  for (let p = lo; p > lo - 4 && p >= 0; p--) {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, p));
      return p;
    } catch {
      // still inside the sequence
    }
  }
  return lo;
}
