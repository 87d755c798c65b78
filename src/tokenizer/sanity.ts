/**
 * The notebook's tokenizer sanity check after the SFT additions (Part 5): JSON, e-mail and order-id samples
 * must tokenize without `[UNK]`.
 * @module
 */

import type { Tokenizer } from "./types.ts";

/** The notebook's tokenizer sanity samples (Part 5). */
export const SANITY_SAMPLES: readonly string[] = [
  '{"name":"张强","email":"zhang.qiang@example.com","order_id":"OD20250425-2019"}',
  '{"name":"孙悦","email":"sun.yue@example.com","order_id":"OD20250424-1269"}',
];

/** The notebook's `[UNK]` check: lines to print (the samples that have `[UNK]`, or "Tokenizer OK: …"). */
export function tokenizerSanityLines(tokenizer: Tokenizer): string[] {
  const lines: string[] = [];
  for (const text of SANITY_SAMPLES) {
    const { ids, tokens } = tokenizer.encode(text, { addSpecialTokens: false });
    // (a byte-level BPE has a token for every byte: its "unk", <|endoftext|>, comes only from that text)
    const unk = tokenizer.unkTokenId;
    if (unk !== undefined && ids.includes(unk)) {
      lines.push(`Tokenizer UNK in sample: ${text}`);
      lines.push(`[${tokens.map((t) => `'${t}'`).join(", ")}]`);
    }
  }
  if (lines.length === 0) lines.push("Tokenizer OK: no [UNK] in JSON/email/order_id samples");
  return lines;
}
