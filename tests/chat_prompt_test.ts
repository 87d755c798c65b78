// The prompt of deno task chat: the notebook's ChatML prompt without a chat template, the model's template
// where its tokenizer_config.json has one, a --system message before the conversation, and the oldest turns
// dropped (the system message kept) to fit the budget.
import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chatPrompt, chatPromptIds } from "../src/cli/chat_prompt.ts";
import { type Message, promptFor } from "../src/data/chatml.ts";
import { CHATML_TEMPLATE, modelChatTemplate } from "../src/data/template.ts";

const ZEPHYR = "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] }}" +
  "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

async function modelDir(cfg: Record<string, unknown>, f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "chat-prompt-"));
  try {
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
    await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const history: Message[] = [{ role: "user", content: "你好" }, { role: "assistant", content: "您好" }];

describe("the prompt of deno task chat", () => {
  test("without a template: the notebook's generate_response prompt, --system before it", async () => {
    await modelDir({ eos_token: "[SEP]" }, async (dir) => {
      const tpl = await modelChatTemplate(dir);
      expect(tpl).toBeUndefined();
      expect(chatPrompt(tpl, { user: "退款" })).toBe(promptFor("退款"));
      expect(chatPrompt(tpl, { system: "你是客服", user: "退款" })).toBe(
        "<|im_start|>system\n你是客服<|im_end|>\n<|im_start|>user\n退款<|im_end|>\n<|im_start|>assistant\n",
      );
      expect(chatPrompt(tpl, { system: "S", history, user: "退款" })).toBe(
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n您好<|im_end|>\n" +
          "<|im_start|>user\n退款<|im_end|>\n<|im_start|>assistant\n",
      );
    });
  });

  test("a model trained with the default saves ChatML: the same prompt", async () => {
    await modelDir({ chat_template: CHATML_TEMPLATE }, async (dir) => {
      expect(await modelChatTemplate(dir)).toBeUndefined();
    });
  });

  test("with the model's template and its special tokens, --system first", async () => {
    await modelDir({ chat_template: ZEPHYR, eos_token: "</s>" }, async (dir) => {
      const tpl = await modelChatTemplate(dir);
      expect(tpl?.name).toBe(`the chat template of ${join(dir, "tokenizer_config.json")}`);
      expect(chatPrompt(tpl, { user: "退款" })).toBe("<|user|>\n退款\n<|assistant|>\n");
      expect(chatPrompt(tpl, { system: "你是客服", history, user: "退款" })).toBe(
        "<|system|>\n你是客服\n<|user|>\n你好\n<|assistant|>\n您好</s>\n<|user|>\n退款\n<|assistant|>\n",
      );
    });
  });

  test("the oldest exchanges are dropped to fit, the system message is kept", () => {
    const encode = (t: string) => [...t].map((c) => c.codePointAt(0)!);
    const long: Message[] = [...history, { role: "user", content: "a" }, { role: "assistant", content: "b" }];
    const full = chatPrompt(undefined, { system: "S", history: long, user: "q" }).length;
    const fit = chatPromptIds(encode, undefined, { system: "S", history: long, user: "q", budget: full - 1 });
    expect(fit.dropped).toBe(2);
    expect(String.fromCodePoint(...fit.ids)).toBe(
      chatPrompt(undefined, { system: "S", history: long.slice(2), user: "q" }),
    );
    const cut = chatPromptIds(encode, undefined, { system: "S", history: [], user: "q".repeat(50), budget: 20 });
    expect(cut.ids.length).toBe(20);
    expect(cut.dropped).toBe(0);
    expect(cut.cut).toBeGreaterThan(0);
  });
});

describe("ChatSession (deno task chat and the browser page)", () => {
  test("a greedy reply is generate's, shown without the decoder's spaces; multi-turn keeps the history", async () => {
    const { createBackend } = await import("../src/backend/mod.ts");
    const { loadModelAndTokenizer } = await import("../src/model/load.ts");
    const { generate } = await import("../src/model/generate.ts");
    const { cleanResponse } = await import("../src/eval/predictors.ts");
    const { ChatSession, DEFAULT_CHAT, displayReply } = await import("../src/cli/chat_session.ts");
    expect(displayReply("[CLS] 退 款 申 请 <|im_end|> x", false)).toBe("退款申请 ");
    expect(displayReply(" a b 退 <|im_end|>", true)).toBe("a b 退 ");
    const be = await createBackend("cpu");
    try {
      const { model, tokenizer } = await loadModelAndTokenizer("tests/fixtures/tiny-gpt2-zh/model", be, {
        prepare: false,
        warn: () => {},
      });
      expect(() => new ChatSession(model, tokenizer, undefined, { ...DEFAULT_CHAT, temperature: 0 })).toThrow(
        "Invalid --temperature: 0",
      );
      expect(() => new ChatSession(model, tokenizer, undefined, { ...DEFAULT_CHAT, maxNewTokens: 10_000 })).toThrow(
        "leaves no room for a prompt",
      );
      const settings = { ...DEFAULT_CHAT, greedy: true, maxNewTokens: 6, multiTurn: true };
      const chat = new ChatSession(model, tokenizer, undefined, settings);
      const seen: string[] = [];
      const first = await chat.send("你好", (s) => seen.push(s));
      const ids = tokenizer.encode(promptFor("你好")).ids;
      const direct = await generate(model, ids, {
        maxNewTokens: 6,
        repetitionPenalty: 1.1,
        noRepeatNgramSize: 3,
        eosTokenId: chat.eos,
      });
      expect(first.text).toBe(cleanResponse(tokenizer.decode(direct)));
      expect(first.shown).toBe(displayReply(first.text, false));
      expect(seen[seen.length - 1]).toBe(first.shown);
      // the second prompt holds the first exchange: it is longer than the message alone
      const second = await chat.send("好");
      const alone = await new ChatSession(model, tokenizer, undefined, settings).send("好");
      expect(second.dropped).toBe(0);
      expect(second.promptTokens).toBeGreaterThan(alone.promptTokens + first.promptTokens - 2);
      chat.reset();
      expect((await chat.send("好")).text).toBe(alone.text);
      model.dispose();
    } finally {
      be.dispose();
    }
  });
});
