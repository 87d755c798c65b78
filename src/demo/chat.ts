/**
 * The offline demo of training on your own conversations (`deno task demo --chat`): a generated chat
 * dataset in the `messages` format (a system prompt, the notebook's customer messages as user turns, their
 * labels as the assistant's answers; a third of the conversations go on with a second turn that asks for the
 * label again), written as JSONL for `--train-file` and `--test-file`.
 * @module
 */

import type { SftRecord } from "../data/jsonl.ts";
import type { Message } from "../data/chatml.ts";

/** The system prompt of every generated conversation. */
export const CHAT_SYSTEM = "你是电商客服助手。请判断用户诉求的类别，只回答类别。";
/** The user's second turn of the two-turn conversations. */
export const CHAT_AGAIN = "请再说一遍类别。";

/** Conversations from classification records: each alone, or (every third) with a second turn, {@link CHAT_AGAIN}. */
export function chatConversations(records: readonly SftRecord[]): { messages: Message[] }[] {
  return records.map((r, i) => {
    const messages: Message[] = [
      { role: "system", content: CHAT_SYSTEM },
      { role: "user", content: r.instruction },
      { role: "assistant", content: r.response },
    ];
    if (i % 3 === 2) messages.push({ role: "user", content: CHAT_AGAIN }, { role: "assistant", content: r.response });
    return { messages };
  });
}
