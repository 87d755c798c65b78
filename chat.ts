/**
 * `deno task chat` (or `bun run chat.ts`): talk to a saved model. Each turn is the notebook's
 * `generate_response` prompt (`<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n`, framed as
 * `[CLS] … [SEP]`), or the model's own chat template where its tokenizer_config.json has one (see
 * src/cli/chat_prompt.ts); the answer streams as it is generated and stops at `<|im_end|>`. Reads stdin, so
 * it also works piped: one prompt per line, then it exits at the end of the input. See `--help`.
 * @module
 */

import { existsSync } from "node:fs";
import { stderr, stdin, stdout } from "node:process";
import { createInterface } from "node:readline";
import { createBackend, parseBackendName } from "./src/backend/mod.ts";
import { numberFlag, parseFlags, runMain, SAMPLING_SEED_RANGE } from "./src/cli/args.ts";
import { IM_END } from "./src/data/chatml.ts";
import {
  ChatSession,
  type ChatSettings,
  type ChatTurn,
  checkChatSettings,
  DEFAULT_CHAT,
} from "./src/cli/chat_session.ts";
import { modelChatTemplate } from "./src/data/template.ts";
import { loadModelAndTokenizer } from "./src/model/load.ts";
import { readSettings } from "./src/env.ts";

const DEFAULT_DIR = "models/ch8_sft_gpt2";

const HELP = `Usage: deno task chat [options]        (or: bun run chat.ts [options])

Chat with a saved model. Each message is sent as the notebook's generate_response prompt
(<|im_start|>user\\n…<|im_end|>\\n<|im_start|>assistant\\n), or rendered with the model's chat template
(the chat_template of its tokenizer_config.json, which deno task train saves) with the generation prompt;
the reply streams as it is generated and stops at <|im_end|>. With stdin piped, every line is one message
and the program exits at the end of the input.

Options
  --model DIR|ID        the model (default ${DEFAULT_DIR}, written by \`deno task train\`), or a LoRA adapter
                        directory (\`deno task train --lora\`: loaded on its base model, merged)
  --adapter DIR         a LoRA adapter (peft's adapter_config.json + adapter_model.safetensors; a directory or
                        hub id) merged into --model; alone, on the base model its adapter_config.json names
  --backend NAME        auto | cpu | webgpu (default auto: WebGPU on a hardware adapter, else CPU)
  --temperature X       sampling temperature (default 0.7, as generate_response)
  --top-p X             nucleus sampling (default 0.9)
  --max-new-tokens N    reply length limit in tokens (default 100)
  --greedy              take the most likely token instead of sampling (the evaluation's setting)
  --seed N              sampling seed (default: a random one); turn i uses seed + i
  --multi-turn          keep the conversation in the prompt (oldest turns dropped to fit the
                        model's n_positions); default: every message is a single turn, as in the notebook
  --system TEXT         a system message before each conversation (before every message, or with
                        --multi-turn at the start of the conversation; kept when old turns are dropped)
  --raw                 show the decoder's text as it is (BERT decoding puts spaces between Chinese
                        characters); default: those spaces are removed for display
  --offline             use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)
  -h, --help            this text

Commands in the chat
  /reset                forget the conversation (with --multi-turn)
  /exit, /quit          leave (so does Ctrl-D or Ctrl-C)
  /help                 show the commands
`;

/** One reply, streamed to stdout as it grows; returns the cleaned text the conversation keeps. */
async function reply(chat: ChatSession, line: string, interactive: boolean): Promise<ChatTurn> {
  let printed = "";
  const turn = await chat.send(line, (shown) => {
    // print what is new (a WordPiece join can change the end of what was shown: then wait for more)
    if (shown.startsWith(printed)) {
      stdout.write(shown.slice(printed.length));
      printed = shown;
    }
  }, ({ dropped, cut }) => {
    if (dropped > 0) stderr.write(`(the ${dropped} oldest messages no longer fit and were left out)\n`);
    if (cut > 0) stderr.write(`(the message is ${cut} tokens too long; its beginning was cut)\n`);
    stdout.write(interactive ? "Assistant> " : "Assistant: ");
  });
  stdout.write("\n");
  return turn;
}

async function main(): Promise<number> {
  const { values: v } = parseFlags({
    options: {
      model: { type: "string" },
      adapter: { type: "string" },
      backend: { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      "max-new-tokens": { type: "string" },
      greedy: { type: "boolean", default: false },
      seed: { type: "string" },
      "multi-turn": { type: "boolean", default: false },
      system: { type: "string" },
      raw: { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const settings: ChatSettings = {
    maxNewTokens: numberFlag("max-new-tokens", v["max-new-tokens"], DEFAULT_CHAT.maxNewTokens, {
      integer: true,
      min: 1,
    }),
    greedy: v.greedy!,
    temperature: numberFlag("temperature", v.temperature, DEFAULT_CHAT.temperature, { min: 0 }),
    topP: numberFlag("top-p", v["top-p"], DEFAULT_CHAT.topP, { min: 0, max: 1 }),
    seed: numberFlag("seed", v.seed, Math.floor(Math.random() * 2 ** 31), SAMPLING_SEED_RANGE),
    raw: v.raw!,
    multiTurn: v["multi-turn"]!,
    system: v.system,
  };
  checkChatSettings(settings);
  // --adapter alone: the adapter on the base model its adapter_config.json names
  const modelSpec = v.model ?? (v.adapter !== undefined ? v.adapter : DEFAULT_DIR);
  const adapter = v.model !== undefined ? v.adapter : undefined;
  if (modelSpec === DEFAULT_DIR && !existsSync(DEFAULT_DIR)) {
    throw new Error(
      `Cannot chat: the model directory ${DEFAULT_DIR} does not exist; train one first with \`npm run train\`, ` +
        "or name another with --model (`npm run demo` then the README's offline walkthrough makes " +
        "runs/tiny/model in a minute, offline; a hub id works too)",
    );
  }
  const interactive = stdin.isTTY === true;
  const env = readSettings();
  const be = await createBackend(parseBackendName(v.backend), env.backend);
  try {
    const warn = (m: string) => void stderr.write(`warning: ${m}\n`);
    const { model, tokenizer, tokenizerDir } = await loadModelAndTokenizer(modelSpec, be, {
      ...(adapter !== undefined ? { adapter } : {}),
      prepare: false,
      hub: { env: env.hub, offline: v.offline || undefined },
      warn,
    });
    const template = await modelChatTemplate(tokenizerDir);
    // eos = <|im_end|>, as generate_response (falling back to the config's eos without the SFT tokens)
    const chat = new ChatSession(model, tokenizer, template, settings);
    if (!chat.hasImEnd) {
      warn(`${modelSpec} has no ${IM_END} token: it is not an SFT model, so replies may not stop early`);
    }
    const decoding = settings.greedy ? "greedy" : `temperature ${settings.temperature}, top-p ${settings.topP}`;
    stderr.write(
      `Loaded ${modelSpec}${
        adapter !== undefined ? ` with the adapter ${adapter}` : ""
      } on ${be.description} (${decoding}, ${settings.maxNewTokens} new tokens, ` +
        `${settings.multiTurn ? "multi-turn" : "single turn"}, ${template ? template.name : "ChatML"})\n`,
    );
    if (interactive) stderr.write("Type a message; /reset, /exit, /help. Ctrl-D quits.\n");

    const rl = createInterface({ input: stdin, output: interactive ? stdout : undefined, terminal: interactive });
    rl.on("SIGINT", () => rl.close());
    rl.setPrompt("User> ");
    if (interactive) rl.prompt();
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === "") {
        if (interactive) rl.prompt();
        continue;
      }
      if (line === "/exit" || line === "/quit") break;
      if (line === "/help") {
        stdout.write("/reset  forget the conversation\n/exit   leave\n");
      } else if (line === "/reset") {
        chat.reset();
        stdout.write("(conversation cleared)\n");
      } else {
        if (!interactive) stdout.write(`User: ${line}\n`);
        await reply(chat, line, interactive);
      }
      if (interactive) rl.prompt();
    }
    rl.close();
    // Ctrl-D or Ctrl-C leave the cursor after "User> ": end that line, so the shell's prompt starts on its own
    if (interactive) stdout.write("\n");
    model.dispose();
    return 0;
  } finally {
    be.dispose();
  }
}

runMain("chat", main);
