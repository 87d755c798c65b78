/**
 * ChatML text back into messages, to check that formatting round-trips (only the tests read ChatML).
 * @module
 */

import { IM_END, IM_START, type Message } from "../../src/data/chatml.ts";

/**
 * Parse ChatML text back into messages: the inverse of `formatChatml`. Every message must be
 * `<|im_start|>{role}\n{content}<|im_end|>` followed by `\n` (the last one may end the text instead);
 * anything else is an error naming the character position.
 */
export function parseChatml(text: string): Message[] {
  const messages: Message[] = [];
  let pos = 0;
  while (pos < text.length) {
    if (!text.startsWith(IM_START, pos)) {
      throw new Error(
        `Cannot parse ChatML: expected ${IM_START} at character ${pos}, found ${
          JSON.stringify(text.slice(pos, pos + 20))
        }`,
      );
    }
    const roleStart = pos + IM_START.length;
    const nl = text.indexOf("\n", roleStart);
    if (nl < 0) throw new Error(`Cannot parse ChatML: the message at character ${pos} has no newline after its role`);
    const role = text.slice(roleStart, nl);
    const end = text.indexOf(IM_END, nl + 1);
    if (end < 0) {
      throw new Error(`Cannot parse ChatML: the ${role} message at character ${pos} is not closed by ${IM_END}`);
    }
    messages.push({ role, content: text.slice(nl + 1, end) });
    pos = end + IM_END.length;
    if (pos < text.length) {
      if (text[pos] !== "\n") {
        throw new Error(`Cannot parse ChatML: expected a newline after ${IM_END} at character ${pos}`);
      }
      pos++;
    }
  }
  return messages;
}
