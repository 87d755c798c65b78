/**
 * What both tokenizer families (tokenizer.ts, byte_level.ts) do alike with their files and added tokens:
 * reading a tokenizer's optional files, parsing its JSON objects, the bookkeeping of `add_special_tokens`
 * and registering added tokens the way Rust's AddedVocabulary numbers them.
 * @module
 */

import { readFile } from "node:fs/promises";
import { addedToken, type AddedTokenJson, SPECIAL_ROLES, type SpecialRole } from "./bert_json.ts";

/** A file's text, or undefined where it does not exist. */
export async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return undefined;
    throw e;
  }
}

/** `text` parsed as a JSON object (undefined for no text); errors name `file` and `source`. */
export function parseJsonObject(
  text: string | undefined,
  file: string,
  source: string,
): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot read ${file} (${source}): ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new Error(`Cannot read ${file} (${source}): not an object`);
  }
  return v as Record<string, unknown>;
}

/** The argument of HF's `add_special_tokens({...})`. */
export type SpecialTokensMap = Partial<Record<SpecialRole, string>> & { additional_special_tokens?: readonly string[] };

/**
 * HF's `add_special_tokens` bookkeeping: the roles `map` names are set in `specials` (in place), the
 * additional special tokens are replaced where `map` gives them. Returns the tokens to register as special
 * added tokens and the additional special tokens now.
 */
export function applySpecialTokens(
  map: SpecialTokensMap,
  specials: Partial<Record<SpecialRole, string>>,
  additional: readonly string[],
): { toAdd: string[]; additional: string[] } {
  const toAdd: string[] = [];
  for (const role of SPECIAL_ROLES) {
    const t = map[role];
    if (t === undefined) continue;
    specials[role] = t;
    toAdd.push(t);
  }
  if (map.additional_special_tokens === undefined) return { toAdd, additional: [...additional] };
  toAdd.push(...map.additional_special_tokens);
  return { toAdd, additional: [...map.additional_special_tokens] };
}

/** The special tokens a config names, in transformers' role order, then the additional ones. */
export function specialTokenNames(
  specials: Partial<Record<SpecialRole, string>>,
  additional: readonly string[],
): string[] {
  return [...SPECIAL_ROLES.map((r) => specials[r]), ...additional].filter((t) => t !== undefined);
}

/** `special_tokens_map.json`: the roles set and the additional special tokens, keys sorted as transformers writes. */
export function specialTokensMapJson(
  specials: Partial<Record<SpecialRole, string>>,
  additional: readonly string[],
): Record<string, unknown> {
  const map: Record<string, unknown> = {};
  if (additional.length > 0) map.additional_special_tokens = [...additional];
  for (const role of SPECIAL_ROLES) {
    const t = specials[role];
    if (t !== undefined) map[role] = t;
  }
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Register `tokens` in `added` (in place, kept sorted by id), as Rust's AddedVocabulary does: a token already
 * added or empty is skipped; one of the vocabulary (`idOf`) keeps its id, the others take ids from `firstNew`
 * on. `keep` may refuse a token (it is then not added). Returns how many were added.
 */
export function registerAddedTokens(
  added: AddedTokenJson[],
  tokens: readonly string[],
  o: {
    special: boolean;
    idOf: (content: string) => number | undefined;
    firstNew: number;
    keep?: (t: string) => boolean;
  },
): number {
  const have = new Set(added.map((t) => t.content));
  let next = o.firstNew;
  let n = 0;
  for (const content of tokens) {
    if (content.length === 0 || have.has(content)) continue;
    if (o.keep && !o.keep(content)) continue;
    added.push(addedToken(o.idOf(content) ?? next++, content, o.special));
    have.add(content);
    n++;
  }
  added.sort((a, b) => a.id - b.id);
  return n;
}
