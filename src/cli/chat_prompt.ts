/**
 * The prompt of `deno task chat`: the conversation so far (after an optional system message) and the new
 * user message, rendered with the model's chat template and its generation prompt, or without one as the
 * notebook's ChatML ending `<|im_start|>assistant\n`; the oldest exchanges are dropped to fit the budget.
 * @module
 */

import type { Message } from "../data/chatml.ts";
import { type ChatTemplate, generationPrompt } from "../data/template.ts";

/** The messages of one prompt: the system message (`--system`), the earlier turns, the new user message. */
export function chatMessages(system: string | undefined, history: readonly Message[], user: string): Message[] {
  return [...(system !== undefined ? [{ role: "system", content: system }] : []), ...history, {
    role: "user",
    content: user,
  }];
}

/** The prompt text that asks for the reply to `user` (see the module comment). */
export function chatPrompt(
  template: ChatTemplate | undefined,
  args: { system?: string; history?: readonly Message[]; user: string },
): string {
  return generationPrompt(template, chatMessages(args.system, args.history ?? [], args.user));
}

/**
 * The prompt ids of a conversation ending with a user turn, dropping the oldest exchanges (a user turn and
 * the reply to it) of `history` until it fits `budget` tokens; one message alone that is too long keeps
 * its first token (`[CLS]`) and the last budget − 1.
 */
export function chatPromptIds(
  encode: (text: string) => number[],
  template: ChatTemplate | undefined,
  args: { system?: string; history: readonly Message[]; user: string; budget: number },
): { ids: number[]; dropped: number; cut: number } {
  let turns = args.history;
  let dropped = 0;
  for (;;) {
    const ids = encode(chatPrompt(template, { system: args.system, history: turns, user: args.user }));
    if (ids.length <= args.budget) return { ids, dropped, cut: 0 };
    if (turns.length > 0) {
      const n = turns.length >= 2 ? 2 : 1;
      turns = turns.slice(n);
      dropped += n;
      continue;
    }
    return {
      ids: [ids[0]!, ...ids.slice(ids.length - (args.budget - 1))],
      dropped,
      cut: ids.length - args.budget,
    };
  }
}
