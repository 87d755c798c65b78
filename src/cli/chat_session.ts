/**
 * One conversation with a loaded model, as `deno task chat` and the browser page hold it: each message becomes
 * the prompt of src/cli/chat_prompt.ts (the model's chat template, or the notebook's ChatML), the reply is
 * generated with generate_response's settings (repetition penalty 1.1, no repeated 3-grams) and stops at
 * `<|im_end|>`; the text is reported as it grows, with the decoder's spaces between Chinese characters removed
 * for display unless `raw`.
 *
 * @example
 * ```ts
 * const chat = new ChatSession(model, tokenizer, template, { ...DEFAULT_CHAT, greedy: true });
 * const { text } = await chat.send("请判断用户诉求类别…", (shown) => console.log(shown));
 * ```
 * @module
 */

import { IM_END, type Message } from "../data/chatml.ts";
import type { ChatTemplate } from "../data/template.ts";
import { cleanResponse } from "../eval/predictors.ts";
import { generate } from "../model/generate.ts";
import type { GPT2 } from "../model/gpt2.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { chatPromptIds } from "./chat_prompt.ts";

/** How replies are made. */
export interface ChatSettings {
  maxNewTokens: number;
  /** The most likely token each step instead of sampling (the evaluation's setting). */
  greedy: boolean;
  temperature: number;
  topP: number;
  /** Sampling seed of the first turn; turn i uses seed + i. */
  seed: number;
  /** Show the decoder's text as it is (default: spaces next to Chinese characters removed). */
  raw: boolean;
  /** Keep the conversation in the prompt (oldest turns dropped to fit); default every message is one turn. */
  multiTurn: boolean;
  /** A system message at the start of every prompt. */
  system?: string;
}

/** generate_response's settings: sampling at temperature 0.7, top-p 0.9, 100 new tokens. */
export const DEFAULT_CHAT: ChatSettings = {
  maxNewTokens: 100,
  greedy: false,
  temperature: 0.7,
  topP: 0.9,
  seed: 0,
  raw: false,
  multiTurn: false,
};

/** CJK characters and full-width punctuation: a decoder space next to one of them is not meaningful. */
const CJK = "\\p{Script=Han}\\u3000-\\u303f\\uff00-\\uffef";
const CJK_SPACE = new RegExp(`(?<=[${CJK}]) +(?=\\S)|(?<=\\S) +(?=[${CJK}])`, "gu");

/** What is shown of the reply so far: generate_response's clean-up without the final strip, spaces tidied. */
export function displayReply(text: string, raw: boolean): string {
  let t = text.replaceAll("[CLS]", "").replaceAll("[SEP]", "");
  const end = t.indexOf(IM_END);
  if (end >= 0) t = t.slice(0, end);
  t = t.trimStart();
  return raw ? t : t.replace(CJK_SPACE, "");
}

/** What one message gave. */
export interface ChatTurn {
  /** generate_response's cleaned reply (what the conversation keeps). */
  text: string;
  /** The reply as shown (see {@link displayReply}). */
  shown: string;
  /** Earlier messages left out of the prompt to fit the model's positions. */
  dropped: number;
  /** Tokens cut from the start of a message too long on its own. */
  cut: number;
  /** The prompt's length in tokens. */
  promptTokens: number;
}

/** Check the decoding settings (before a model is loaded: the CLI's flags fail fast). */
export function checkChatSettings(settings: ChatSettings): void {
  if (!settings.greedy && !(settings.temperature > 0)) {
    throw new Error(`Invalid --temperature: ${settings.temperature} (sampling needs > 0; use --greedy instead)`);
  }
  if (!(settings.topP > 0 && settings.topP <= 1)) {
    throw new Error(`Invalid --top-p: ${settings.topP} (expected 0 < p ≤ 1)`);
  }
}

/** A conversation with one model (see the module comment). */
export class ChatSession {
  /** The id that ends a reply: `<|im_end|>`, else the config's eos (a model without the SFT tokens). */
  readonly eos: number | undefined;
  /** False when the tokenizer has no `<|im_end|>`: the model is not an SFT model and replies may run on. */
  readonly hasImEnd: boolean;
  /** Tokens the prompt may take: n_positions − maxNewTokens. */
  readonly budget: number;
  #history: Message[] = [];
  #turn = 0;

  constructor(
    readonly model: GPT2,
    readonly tokenizer: Tokenizer,
    readonly template: ChatTemplate | undefined,
    readonly settings: ChatSettings,
  ) {
    checkChatSettings(settings);
    const imEnd = tokenizer.tokenToId(IM_END);
    this.hasImEnd = imEnd !== undefined && imEnd !== tokenizer.unkTokenId;
    this.eos = this.hasImEnd ? imEnd : model.config.eosTokenId;
    this.budget = model.config.nPositions - settings.maxNewTokens;
    if (this.budget < 8) {
      throw new Error(
        `Invalid --max-new-tokens: ${settings.maxNewTokens} leaves no room for a prompt in ${model.config.nPositions} positions`,
      );
    }
  }

  /** Forget the conversation. */
  reset(): void {
    this.#history = [];
  }

  /**
   * Reply to `user`; `onPrompt` is told, before generating, what the prompt left out, and `onText` gets the
   * reply as shown each time it grows.
   */
  async send(
    user: string,
    onText: (shown: string) => void = () => {},
    onPrompt: (p: { dropped: number; cut: number }) => void = () => {},
  ): Promise<ChatTurn> {
    const s = this.settings;
    const { ids, dropped, cut } = chatPromptIds((t) => this.tokenizer.encode(t).ids, this.template, {
      system: s.system,
      history: s.multiTurn ? this.#history : [],
      user,
      budget: this.budget,
    });
    onPrompt({ dropped, cut });
    const gen: number[] = [];
    let shown = "";
    const out = await generate(this.model, ids, {
      maxNewTokens: s.maxNewTokens,
      doSample: !s.greedy,
      temperature: s.temperature,
      topP: s.topP,
      seed: s.seed + this.#turn++,
      repetitionPenalty: 1.1,
      noRepeatNgramSize: 3,
      eosTokenId: this.eos,
      onToken: (id) => {
        if (id === this.eos) return;
        gen.push(id);
        // decoding the whole reply each time keeps WordPiece joins right
        const now = displayReply(this.tokenizer.decode(gen), s.raw);
        if (now !== shown) onText(shown = now);
      },
    });
    const text = cleanResponse(this.tokenizer.decode(out));
    const final = displayReply(text, s.raw);
    if (final !== shown) onText(final);
    if (s.multiTurn) this.#history.push({ role: "user", content: user }, { role: "assistant", content: text });
    return { text, shown: final, dropped, cut, promptTokens: ids.length };
  }
}
