/**
 * Phase 2 of the notebook, "Part 2：ChatML 格式": a conversation in ChatML, printed exactly as the
 * notebook's `format_conversation` example. Run: `deno run -A phases/02_chatml.ts` or `bun phases/02_chatml.ts`.
 * @module
 */

import process from "node:process";
import { parseFlags, runMain } from "../src/cli/args.ts";
import { formatChatml, type Message } from "../src/data/chatml.ts";

const HELP = `Usage: deno run -A phases/02_chatml.ts [options]

The notebook's Part 2: the ChatML format (<|im_start|>{role}\\n{content}<|im_end|>\\n per message) and its
example conversation. Needs no model; --model and --backend are accepted so that every phase takes the
same flags, and ignored.

  -h, --help    this text
`;

/** The notebook's SPECIAL_TOKENS dict of Part 2 (defined there, not printed; the SFT run adds only some). */
export const NOTEBOOK_SPECIAL_TOKENS = {
  bos_token: "<|startoftext|>",
  eos_token: "<|endoftext|>",
  pad_token: "<|pad|>",
  additional_special_tokens: ["<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|system|>"],
} as const;

/** The notebook's `example_conv`. */
export const EXAMPLE_CONVERSATION: readonly Message[] = [
  { role: "system", content: "You are a helpful AI assistant." },
  { role: "user", content: "What is Python?" },
  {
    role: "assistant",
    content: "Python is a high-level programming language known for its simplicity and readability.",
  },
];

/** Run the phase; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      model: { type: "string" },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return Promise.resolve(0);
  }
  print("## Part 2：ChatML 格式\n");
  print("ChatML 是一种用于表示对话的标准格式：\n");
  print("ChatML Format Example:");
  print("=".repeat(60));
  // print(format_conversation(example_conv)): the text ends with "\n", print adds another
  print(formatChatml(EXAMPLE_CONVERSATION));
  return Promise.resolve(0);
}

if (import.meta.main) runMain("phases/02_chatml", () => main(process.argv.slice(2)));
