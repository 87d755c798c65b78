/**
 * Chat data in the standard formats, read from JSONL into conversations for SFT:
 * - `messages` (OpenAI / Hugging Face): `{"messages": [{"role": "system"|"user"|"assistant", "content": "…",
 *   "weight": 0|1}, …]}`; `"weight": 0` on an assistant message leaves it out of the loss, as OpenAI's
 *   fine-tuning format does;
 * - `sharegpt`: `{"conversations": [{"from": "system"|"human"|"gpt", "value": "…"}, …]}`;
 * - `prompt-completion`: `{"prompt": "…", "completion": "…"}`, one user turn and one assistant turn, or
 *   message lists in either field (TRL's conversational prompt-completion);
 * - `text`: `{"text": "…"}`, plain language-model data: every token is trained;
 * - `notebook`: the notebook's `{"instruction": "…", "response": "…"}` records.
 * The format is detected from the first record's keys (`auto`) or forced; every record must then be of it.
 * A bad record names the file, the line and the field. A conversation with no assistant turn that carries
 * loss is skipped and counted (its line kept), not an error.
 * @module
 */

import { readFile } from "node:fs/promises";
import { type JsonlEntry, parseJsonl } from "./jsonl.ts";
import type { Message } from "./chatml.ts";
import type { SftInput } from "./sft_dataset.ts";

/** The formats, for `--format`. */
export const DATA_FORMATS = ["auto", "messages", "sharegpt", "prompt-completion", "text", "notebook"] as const;
/** A data format (`auto`: detected per file). */
export type DataFormat = typeof DATA_FORMATS[number];

/** A chat message (with its loss weight, see {@link Message}). */
export type ChatMessage = Message;

/** One example of a data file: a conversation, or plain text (`text` format). */
export type ChatExample =
  | { kind: "chat"; messages: ChatMessage[]; line: number }
  | { kind: "text"; text: string; line: number };

/** An example as the SFT dataset takes it: the conversation's messages, or the plain text. */
export function sftInput(e: ChatExample): SftInput {
  return e.kind === "text" ? { text: e.text } : e.messages;
}

/** What {@link parseChatData} read. */
export interface ChatData {
  /** The format of the file (detected, or the one forced). */
  format: Exclude<DataFormat, "auto">;
  examples: ChatExample[];
  /** Lines of the conversations skipped because no assistant turn carries loss. */
  skipped: number[];
}

const SHAREGPT_ROLES: Record<string, string> = {
  system: "system",
  human: "user",
  user: "user",
  gpt: "assistant",
  assistant: "assistant",
};

/** The format a record's keys say, or undefined. */
export function detectFormat(value: unknown): Exclude<DataFormat, "auto"> | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const r = value as Record<string, unknown>;
  if ("messages" in r) return "messages";
  if ("conversations" in r) return "sharegpt";
  if ("prompt" in r && "completion" in r) return "prompt-completion";
  if ("instruction" in r && "response" in r) return "notebook";
  if ("text" in r) return "text";
  return undefined;
}

const describe = (v: unknown) =>
  v === null
    ? "null"
    : Array.isArray(v)
    ? "a list"
    : typeof v === "string"
    ? "a string"
    : `${typeof v} ${JSON.stringify(v)}`;

/** Parse the records of a chat data file (see the module's formats). `file` names it in errors. */
export function parseChatData(text: string, file: string, format: DataFormat = "auto"): ChatData {
  const entries = parseJsonl(text, file);
  const fmt = format === "auto" ? detectFormat(entries[0]!.value) : format;
  if (fmt === undefined) {
    const keys = Object.keys((entries[0]!.value ?? {}) as object).map((k) => JSON.stringify(k)).join(", ");
    throw new Error(
      `${file}:${entries[0]!.line}: cannot tell the data format from the keys (${keys || "none"}): expected ` +
        `"messages", "conversations" (ShareGPT), "prompt" + "completion", "text", or "instruction" + "response"; ` +
        "or pass --format",
    );
  }
  const examples: ChatExample[] = [];
  const skipped: number[] = [];
  for (const e of entries) {
    const ex = parseRecord(e, file, fmt);
    if (ex.kind === "chat" && !ex.messages.some((m) => m.role === "assistant" && m.weight !== 0)) skipped.push(e.line);
    else examples.push(ex);
  }
  return { format: fmt, examples, skipped };
}

/** Read and parse a chat data file. */
export async function readChatData(path: string, format: DataFormat = "auto"): Promise<ChatData> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new Error(`Cannot read ${path}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  return parseChatData(text, path, format);
}

function parseRecord(e: JsonlEntry, file: string, fmt: Exclude<DataFormat, "auto">): ChatExample {
  const at = `${file}:${e.line}`;
  const v = e.value;
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new Error(`${at}: expected a JSON object (a ${fmt} record), got ${describe(v)}`);
  }
  const r = v as Record<string, unknown>;
  const str = (value: unknown, field: string): string => {
    if (typeof value !== "string") throw new Error(`${at}: field "${field}" must be a string, got ${describe(value)}`);
    return value;
  };
  const need = (field: string) => {
    if (!(field in r)) throw new Error(`${at}: missing field "${field}" (a ${fmt} record)`);
    return r[field];
  };
  switch (fmt) {
    case "messages":
      return { kind: "chat", messages: messageList(need("messages"), `${at}: field "messages"`), line: e.line };
    case "sharegpt": {
      const turns = need("conversations");
      if (!Array.isArray(turns)) throw new Error(`${at}: field "conversations" must be a list, got ${describe(turns)}`);
      const messages = turns.map((t, i): ChatMessage => {
        const where = `conversations[${i}]`;
        if (t === null || typeof t !== "object" || Array.isArray(t)) {
          throw new Error(`${at}: field "${where}" must be an object with "from" and "value", got ${describe(t)}`);
        }
        const from = str((t as Record<string, unknown>).from, `${where}.from`);
        const role = SHAREGPT_ROLES[from];
        if (role === undefined) {
          throw new Error(`${at}: field "${where}.from" is ${JSON.stringify(from)}; expected system, human or gpt`);
        }
        return { role, content: str((t as Record<string, unknown>).value, `${where}.value`) };
      });
      return { kind: "chat", messages, line: e.line };
    }
    case "prompt-completion": {
      const prompt = need("prompt"), completion = need("completion");
      const part = (value: unknown, field: string, role: string): ChatMessage[] =>
        typeof value === "string" ? [{ role, content: value }] : messageList(value, `${at}: field "${field}"`);
      const answer = part(completion, "completion", "assistant");
      // only the completion is trained on, as TRL's prompt-completion: prompt messages carry no loss
      const asked = part(prompt, "prompt", "user").map((
        m,
      ) => (m.role === "assistant" ? { ...m, weight: 0 as const } : m));
      return { kind: "chat", messages: [...asked, ...answer], line: e.line };
    }
    case "text":
      return { kind: "text", text: str(need("text"), "text"), line: e.line };
    case "notebook":
      return {
        kind: "chat",
        messages: [
          { role: "user", content: str(need("instruction"), "instruction") },
          { role: "assistant", content: str(need("response"), "response") },
        ],
        line: e.line,
      };
  }
}

/** A list of `{role, content, weight?}` messages (`where` names the field in errors). */
function messageList(value: unknown, where: string): ChatMessage[] {
  if (!Array.isArray(value)) throw new Error(`${where} must be a list of messages, got ${describe(value)}`);
  return value.map((m, i): ChatMessage => {
    const w = `${where}[${i}]`;
    if (m === null || typeof m !== "object" || Array.isArray(m)) {
      throw new Error(`${w} must be an object with "role" and "content", got ${describe(m)}`);
    }
    const r = m as Record<string, unknown>;
    if (typeof r.role !== "string" || r.role === "") {
      throw new Error(`${w}.role must be a non-empty string, got ${describe(r.role)}`);
    }
    if (typeof r.content !== "string") throw new Error(`${w}.content must be a string, got ${describe(r.content)}`);
    const out: ChatMessage = { role: r.role, content: r.content };
    if (r.weight !== undefined) {
      if (r.weight !== 0 && r.weight !== 1) throw new Error(`${w}.weight must be 0 or 1, got ${describe(r.weight)}`);
      if (r.role !== "assistant") throw new Error(`${w}.weight is only allowed on assistant messages (role ${r.role})`);
      out.weight = r.weight;
    }
    return out;
  });
}

/**
 * Split examples into training and validation: a seeded shuffle of the indices, the first
 * `round(fraction · n)` (at least 1 where fraction > 0 and n > 1) for validation, both in file order.
 */
export function splitValidation<T>(examples: readonly T[], fraction: number, seed: number): { train: T[]; val: T[] } {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`Invalid --val-split ${fraction}: expected a number in [0, 1)`);
  const n = examples.length;
  const nVal = fraction === 0 || n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
  const order = [...examples.keys()];
  // a small LCG-driven Fisher–Yates: the split is the same for the same seed on every runtime
  let s = (seed >>> 0) || 1;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const isVal = new Set(order.slice(0, nVal));
  return {
    train: examples.filter((_, i) => !isVal.has(i)),
    val: examples.filter((_, i) => isVal.has(i)),
  };
}
