/**
 * The notebook's evaluation scoring (Part 6), ported line by line: `clean_generated`, `normalize_text`,
 * `extract_number`, `extract_json`, `_to_ascii_digits`, `_normalize_json_key/value`, `normalize_json_obj`,
 * `_normalize_text_for_eval`, `parse_plain_fields`, `score_prediction`, and the per-category summary of
 * `evaluate_model`.
 *
 * Where Python and JavaScript differ, this follows Python:
 * - `\s` in a Python `str` pattern, `str.strip()` and `str.split()` use Python's whitespace set
 *   ({@link PY_WHITESPACE}: it includes U+001C–U+001F and U+0085, which JS `\s` lacks, and excludes U+FEFF,
 *   which JS `\s` and `trim()` include).
 * - `\d` in a Python `str` pattern is any Unicode decimal digit (`\p{Nd}`), not just 0-9: `extract_number`
 *   on `"１２"` gives `"１２"`, which does not equal `"12"`.
 * - `json.loads` also accepts `NaN`, `Infinity` and `-Infinity` ({@link pyJsonLoads}); `==` on parsed JSON
 *   treats `1`, `1.0` and `true` as equal ({@link pyEquals}).
 * - `str.lower()` is `toLowerCase()`; the two agree on every code point except characters added to
 *   Unicode after the Python build's tables (checked against Python 3.11 / Unicode 14).
 * - Python slices and lengths count code points; {@link pySlice} does the same.
 * Remaining difference: JSON integers beyond 2^53 lose precision here, as JSON.parse's do.
 * @module
 */

/** The characters Python's `str.isspace()` (and so `\s`, `strip()`, `split()`) treats as whitespace. */
export const PY_WHITESPACE =
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" +
  "\u2028\u2029\u202f\u205f\u3000";

/** A regex character class body for {@link PY_WHITESPACE}. */
const WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WS_RUN = new RegExp(`[${WS}]+`, "gu");
const WS_EDGES = new RegExp(`^[${WS}]+|[${WS}]+$`, "gu");

/** Python's `s.strip()` (no argument). */
export function pyStrip(s: string): string {
  return s.replace(WS_EDGES, "");
}

/** Python's `s.split()` (no argument): split on runs of whitespace, no empty strings. */
export function pySplit(s: string): string[] {
  return s.split(WS_RUN).filter((w) => w !== "");
}

/** Python's `s[:n]` for n ≥ 0: the first `n` code points (not UTF-16 units). */
export function pySlice(s: string, n: number): string {
  let i = 0, count = 0;
  while (i < s.length && count < n) {
    const c = s.codePointAt(i)!;
    i += c > 0xffff ? 2 : 1;
    count++;
  }
  return s.slice(0, i);
}

const SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|assistant|>", "<|user|>", "<|system|>"];

/** `clean_generated`: drop `[CLS]`, `[SEP]` and the chat tokens, then strip. null/undefined → "". */
export function cleanGenerated(text: string | null | undefined): string {
  if (text === null || text === undefined) return "";
  let cleaned = text.replaceAll("[CLS]", "").replaceAll("[SEP]", "");
  for (const token of SPECIAL_TOKENS) cleaned = cleaned.replaceAll(token, "");
  return pyStrip(cleaned);
}

/** `normalize_text`: cleaned, lower-cased, whitespace runs collapsed to one space. */
export function normalizeText(text: string | null | undefined): string {
  return pySplit(pyStrip(cleanGenerated(text)).toLowerCase()).join(" ");
}

/** `extract_number`: the first `-?\d+` (Unicode digits, as Python's `\d`), or null. */
export function extractNumber(text: string): string | null {
  const m = /-?\p{Nd}+/u.exec(text);
  return m ? m[0] : null;
}

/** A value `json.loads` can return. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const LITERALS: readonly (readonly [string, JsonValue])[] = [
  ["null", null],
  ["true", true],
  ["false", false],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
];

/**
 * Python's `json.loads` (strict mode): JSON plus the literals `NaN`, `Infinity`, `-Infinity`.
 * Throws a SyntaxError on anything else (as `json.loads` raises `JSONDecodeError`).
 */
export function pyJsonLoads(text: string): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`Cannot parse JSON: ${what} at position ${i}`);
  };
  const skip = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  // Control characters are not allowed raw inside JSON strings (json.loads strict mode).
  // deno-lint-ignore no-control-regex
  const STRING = /"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?/y;
  const token = (re: RegExp): string | null => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) return null;
    i += m[0].length;
    return m[0];
  };
  const value = (): JsonValue => {
    skip();
    const c = text[i];
    if (c === "{") {
      i++;
      // Object.fromEntries-style own properties, so a key "__proto__" is data, not the prototype.
      const obj: { [key: string]: JsonValue } = {};
      skip();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        skip();
        const k = token(STRING) ?? fail("expected a string key");
        skip();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        Object.defineProperty(obj, JSON.parse(k) as string, {
          value: value(),
          enumerable: true,
          writable: true,
          configurable: true,
        });
        skip();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      skip();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        skip();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return arr;
        } else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return JSON.parse(token(STRING) ?? fail("bad string")) as string;
    for (const [lit, v] of LITERALS) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return v;
      }
    }
    const n = token(NUMBER);
    if (n !== null) return Number(n);
    return fail("unexpected character");
  };
  const v = value();
  skip();
  if (i !== text.length) fail("extra data");
  return v;
}

/** A JSON object (Python's dict): not null, not an array. */
export function isDict(v: unknown): v is { [key: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Python's `==` on values from `json.loads` inside a dict or list: `1 == 1.0 == True`, `0 == False`,
 * NaN equal to NaN (json's NaN is one shared object, and containers compare identity first), lists
 * elementwise, dicts by key set and values.
 */
export function pyEquals(a: unknown, b: unknown): boolean {
  const numeric = (v: unknown) => typeof v === "number" || typeof v === "boolean";
  if (numeric(a) && numeric(b)) {
    // json.loads returns one shared NaN object and container comparison checks identity first, so two
    // parsed NaNs compare equal.
    return Number(a) === Number(b) || (Number.isNaN(a) && Number.isNaN(b));
  }
  if (typeof a === "string" || typeof b === "string") return a === b;
  if (a === null || b === null) return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => pyEquals(x, b[i]));
  }
  if (isDict(a) && isDict(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && pyEquals(a[k], b[k]));
  }
  return false;
}

/**
 * `extract_json`: every non-greedy `\{.*?\}` (across lines) in the cleaned text; the last one that parses,
 * or null. (Non-greedy: a nested object's first match ends at its inner `}` and does not parse.)
 */
export function extractJson(text: string | null | undefined): JsonValue | null {
  const cleaned = cleanGenerated(text);
  const matches = cleaned.match(/\{.*?\}/gsu);
  if (!matches) return null;
  for (let i = matches.length - 1; i >= 0; i--) {
    try {
      return pyJsonLoads(matches[i]!);
    } catch {
      continue;
    }
  }
  return null;
}

/** `_to_ascii_digits`: full-width digits ０-９ to 0-9 (other characters untouched). */
export function toAsciiDigits(text: string): string {
  return text.replace(/[０-９]/g, (d) => String.fromCharCode(d.charCodeAt(0) - 0xff10 + 0x30));
}

/** `_normalize_json_key`: drop `##`, whitespace; squeeze `_` runs; `orderid` → `order_id`; ASCII digits. */
export function normalizeJsonKey(key: string): string {
  key = key.replaceAll("##", "");
  key = key.replace(WS_RUN, "");
  key = key.replace(/_+/g, "_");
  if (key === "orderid") key = "order_id";
  return toAsciiDigits(key);
}

/** `_normalize_json_value`: strings lose `##` and whitespace and get ASCII digits; other values as they are. */
export function normalizeJsonValue<T>(val: T): T | string {
  if (typeof val === "string") return toAsciiDigits(val.replaceAll("##", "").replace(WS_RUN, ""));
  return val;
}

/**
 * `normalize_json_obj`: a dict gets its keys and values normalized (later keys that normalize to the same
 * name overwrite earlier ones, keeping the first one's position, as a Python dict); anything else is
 * returned as it is.
 */
export function normalizeJsonObj(obj: unknown): unknown {
  if (!isDict(obj)) return obj;
  const entries = new Map<string, unknown>();
  for (const [k, v] of Object.entries(obj)) entries.set(normalizeJsonKey(k), normalizeJsonValue(v));
  return Object.fromEntries(entries);
}

/** `_normalize_text_for_eval`: cleaned, `##` removed, ASCII digits, all whitespace removed. */
export function normalizeTextForEval(text: string | null | undefined): string {
  return toAsciiDigits(cleanGenerated(text).replaceAll("##", "")).replace(WS_RUN, "");
}

/** The three fields of the JSON-extraction task. */
export interface PlainFields {
  name: string;
  email: string;
  order_id: string;
}

/**
 * `parse_plain_fields`: name after `姓名[:：]?` up to `；;，,。` or a newline, the first e-mail address, the
 * first `OD\d{8}-\d{4}`; null unless all three are found (and non-empty).
 */
export function parsePlainFields(text: string | null | undefined): PlainFields | null {
  const { name, email, order_id } = findPlainFields(text);
  if (!(name && email && order_id)) return null;
  return { name, email, order_id };
}

/** The fields {@link parsePlainFields} looks for, each found or not on its own (for per-field scores). */
export function findPlainFields(text: string | null | undefined): Partial<PlainFields> {
  const t = normalizeTextForEval(text);
  const found: Partial<PlainFields> = {};
  const name = /姓名[:：]?([^；;，,。\n]+)/u.exec(t)?.[1];
  const email = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/u.exec(t)?.[0];
  const orderId = /OD\p{Nd}{8}-\p{Nd}{4}/u.exec(t)?.[0];
  if (name) found.name = name;
  if (email) found.email = email;
  if (orderId) found.order_id = orderId;
  return found;
}

/** What a test record needs for scoring (`metric` is "numeric", "json" or anything else meaning text). */
export interface ScoredRecord {
  metric: string;
  expected: string;
}

/** Scoring options: `plain` is the notebook's USE_PLAIN_EVAL (json metric scored from `姓名：…；邮箱：…`). */
export interface ScoreOptions {
  plain?: boolean;
}

function tryLoads(s: string): JsonValue | null {
  try {
    return pyJsonLoads(s);
  } catch {
    return null;
  }
}

/**
 * `score_prediction`: numeric — the first number of the normalized prediction equals `expected` (as
 * strings); json — the prediction's (last parseable) JSON object, or with `plain` its parsed fields,
 * equals `expected` parsed, both normalized; otherwise — the normalized expected text occurs in the
 * normalized prediction.
 */
export function scorePrediction(
  pred: string | null | undefined,
  record: ScoredRecord,
  opts: ScoreOptions = {},
): boolean {
  const cleaned = cleanGenerated(pred);
  const predNorm = normalizeText(cleaned);
  const expected = record.expected;
  const expectedNorm = normalizeText(expected);
  const metric = record.metric;

  if (metric === "numeric") return extractNumber(predNorm) === expected;

  if (metric === "json") {
    // Python: `if pred_obj is None or expected_obj is None` — JSON `null` parses to None as well.
    const predObj = opts.plain ? parsePlainFields(cleaned) : extractJson(cleaned);
    const expectedObj = tryLoads(expected);
    if (predObj === null || expectedObj === null) return false;
    return pyEquals(normalizeJsonObj(predObj), normalizeJsonObj(expectedObj));
  }

  return predNorm.includes(expectedNorm);
}

/** One scored test item. */
export interface ScoredItem {
  category: string;
  correct: boolean;
}

/** Accuracy of one category (or of all items: `category` "overall"). */
export interface CategoryScore {
  category: string;
  correct: number;
  total: number;
  /** correct / total, as the notebook's `sum(vals) / len(vals)`. */
  accuracy: number;
}

/**
 * Python's `str(float)`: the shortest repr, in exponent form with a two-digit exponent outside
 * 1e-4 ≤ |x| < 1e16 (`5e-05`, `0.001`, `1e+16`), as the notebook prints its settings.
 */
export function pyFloat(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-4 || a >= 1e16)) {
    return x.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  }
  return Number.isInteger(x) ? `${x}.0` : String(x);
}

/** The notebook's summary dict: categories in first-seen order, then overall. */
export interface Summary {
  categories: CategoryScore[];
  overall: CategoryScore;
}

/** `evaluate_model`'s summary: per-category accuracy in first-seen order, and overall. Throws when empty. */
export function summarize(results: readonly ScoredItem[]): Summary {
  if (results.length === 0) throw new Error("Cannot summarize evaluation: no results");
  const byCat = new Map<string, { correct: number; total: number }>();
  for (const r of results) {
    const c = byCat.get(r.category) ?? { correct: 0, total: 0 };
    c.total++;
    if (r.correct) c.correct++;
    byCat.set(r.category, c);
  }
  const categories = [...byCat].map(([category, c]) => ({ category, ...c, accuracy: c.correct / c.total }));
  const correct = categories.reduce((a, c) => a + c.correct, 0);
  return {
    categories,
    overall: { category: "overall", correct, total: results.length, accuracy: correct / results.length },
  };
}
