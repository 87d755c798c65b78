// Chat templates against transformers: tests/fixtures/chat_template/apply_chat_template.json holds what
// apply_chat_template made of a few conversations (make_chat_template_fixture.py) with the notebook's ChatML
// as a Jinja template (with generation blocks), a Zephyr-style template without them and one with
// indentation and whitespace control, and the assistant_masks of return_assistant_tokens_mask with the
// tokenizer of tests/fixtures/tiny-gpt2-zh. Texts and integer masks: compared exactly.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chatmlWithSpans, labelsFromOffsets, type Message, type SpanMode, type TrainOn } from "../src/data/chatml.ts";
import { buildSftDataset, processExample } from "../src/data/sft_dataset.ts";
import {
  CHATML_TEMPLATE,
  type ChatTemplate,
  compileChatTemplate,
  conversationRenderer,
  generationPrompt,
  readModelChatTemplate,
  resolveChatTemplate,
  templateWithSpans,
} from "../src/data/template.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";

interface Rendered {
  text?: string;
  error?: string;
  generation_prompt?: string | null;
  input_ids?: number[];
  assistant_masks?: number[];
}
const FIXTURE = new URL("./fixtures/", import.meta.url).pathname;
const fx = JSON.parse(await readFile(FIXTURE + "chat_template/apply_chat_template.json", "utf8")) as {
  eos_token: string;
  templates: Record<string, string>;
  cases: { messages: Message[]; templates: Record<string, Rendered> }[];
};
const specialTokens = { eos_token: fx.eos_token };
const templates: Record<string, ChatTemplate> = Object.fromEntries(
  Object.entries(fx.templates).map(([k, src]) => [k, compileChatTemplate(src, { name: k, specialTokens })]),
);
const tok = await BertTokenizer.fromDir(FIXTURE + "tiny-gpt2-zh/model");
tok.prepareForSft();

const MODES: SpanMode[] = ["assistant", "assistant+eos", "none"];
const TRAIN_ON: TrainOn[] = ["all", "last"];
/** ChatML without its generation blocks: its spans come from rendering prefixes. */
const chatmlByPrefixes = compileChatTemplate(
  CHATML_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", ""),
);

describe("chat templates against transformers' apply_chat_template", () => {
  test("CHATML_TEMPLATE is the template the fixture was rendered with", () => {
    expect(fx.templates.chatml).toBe(CHATML_TEMPLATE);
  });

  test("every text, generation prompt and error is transformers'", () => {
    let n = 0;
    for (const c of fx.cases) {
      for (const [name, want] of Object.entries(c.templates)) {
        const tpl = templates[name]!;
        if (want.error !== undefined) {
          expect(() => tpl.render(c.messages)).toThrow(want.error);
          continue;
        }
        expect(tpl.render(c.messages)).toBe(want.text!);
        expect(tpl.render(c.messages.slice(0, -1), { addGenerationPrompt: true })).toBe(want.generation_prompt!);
        n++;
      }
    }
    expect(n).toBe(17);
  });

  test("generation blocks give return_assistant_tokens_mask's assistant_masks", () => {
    let n = 0;
    for (const c of fx.cases) {
      for (const name of ["chatml", "indented"]) {
        const want = c.templates[name]!;
        const { text, spans } = templateWithSpans(templates[name]!, c.messages, "assistant+eos");
        expect(text).toBe(want.text!);
        const enc = tok.encode(text, { addSpecialTokens: false });
        expect(enc.ids).toEqual(want.input_ids!);
        const mask = labelsFromOffsets(enc.ids, enc.offsets, spans).map((l) => (l === -100 ? 0 : 1));
        expect(mask).toEqual(want.assistant_masks!);
        n++;
      }
    }
    expect(n).toBe(12);
  });

  test("ChatML as a template gives chatmlWithSpans' text and spans, from generation blocks and from prefixes", () => {
    const convs: Message[][] = [
      ...fx.cases.map((c) => c.messages),
      [
        { role: "user", content: "a" },
        { role: "assistant", content: "b", weight: 0 },
        { role: "user", content: "c" },
        { role: "assistant", content: "d" },
        { role: "assistant", content: "e", weight: 0 },
      ],
    ];
    for (const c of convs) {
      for (const mode of MODES) {
        for (const trainOn of TRAIN_ON) {
          const want = chatmlWithSpans(c, mode, trainOn);
          expect(templateWithSpans(templates.chatml!, c, mode, trainOn)).toEqual(want);
          expect(templateWithSpans(chatmlByPrefixes, c, mode, trainOn)).toEqual(want);
        }
      }
    }
  });
});

describe("loss spans of a template", () => {
  const zephyr = templates.zephyr!;
  const conv: Message[] = [
    { role: "user", content: "你好" },
    { role: "assistant", content: "您好", weight: 0 },
    { role: "user", content: "退款" },
    { role: "assistant", content: "退款申请" },
  ];
  const slices = (r: { text: string; spans: [number, number][] }) => r.spans.map(([a, b]) => r.text.slice(a, b));

  test("from prefixes: the content, or the content and the eos token, without the header", () => {
    expect(zephyr.hasGeneration).toBe(false);
    const all = conv.map((m) => ({ ...m, weight: undefined }));
    expect(slices(templateWithSpans(zephyr, all, "assistant"))).toEqual(["您好", "退款申请"]);
    expect(slices(templateWithSpans(zephyr, all, "assistant+eos"))).toEqual(["您好<|im_end|>", "退款申请<|im_end|>"]);
    expect(slices(templateWithSpans(zephyr, all, "assistant+eos", "last"))).toEqual(["退款申请<|im_end|>"]);
  });

  test("weight-0 turns carry no loss, and --train-on last keeps the last trained turn", () => {
    expect(slices(templateWithSpans(zephyr, conv, "assistant+eos"))).toEqual(["退款申请<|im_end|>"]);
    const last: Message[] = [...conv.slice(0, 2), { role: "user", content: "x" }, { ...conv[3]!, weight: 0 }];
    expect(templateWithSpans(zephyr, last, "assistant", "last").spans).toEqual([]);
    const lastTrained = [{ ...conv[1]!, weight: 1 as const }];
    const c2 = [conv[0]!, ...lastTrained, conv[2]!, { ...conv[3]!, weight: 0 as const }];
    expect(slices(templateWithSpans(templates.indented!, c2, "assistant", "last"))).toEqual(["您好"]);
    expect(slices(templateWithSpans(templates.indented!, c2, "assistant+eos"))).toEqual(["您好<end>"]);
  });

  test("<|im_end|> inside content and empty content stay in their turn", () => {
    const c: Message[] = [
      { role: "user", content: "a<|im_end|>" },
      { role: "assistant", content: "" },
      { role: "user", content: "b" },
      { role: "assistant", content: "<|im_end|>x<|im_end|>" },
    ];
    for (const tpl of [zephyr, templates.indented!]) {
      const r = templateWithSpans(tpl, c, "assistant");
      expect(slices(r)).toEqual(["", "<|im_end|>x<|im_end|>"]);
      expect(r.spans[0]![0]).toBeGreaterThan(r.text.indexOf("a<|im_end|>"));
    }
  });

  test("a role the template does not know is an error naming the line of the data file", () => {
    const bad: Message[] = [{ role: "user", content: "hi" }, { role: "tool", content: "42" }, conv[3]!];
    const opts = { maxLength: 64, mask: "assistant" as const, render: conversationRenderer(zephyr) };
    expect(() => buildSftDataset([conv, bad], tok, { ...opts, source: "chat.jsonl", lines: [3, 7] })).toThrow(
      "Cannot render line 7 of chat.jsonl: zephyr refused the conversation: Unknown role: tool",
    );
    expect(() => buildSftDataset([bad], tok, opts)).toThrow("Cannot render conversation 1: zephyr refused");
    // the default (ChatML) takes any role
    expect(processExample(bad, tok, { maxLength: 64, mask: "assistant" })).toBeDefined();
  });

  test("a template whose generation prompt is not a prefix of the reply is refused, naming generation blocks", () => {
    const t = compileChatTemplate(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}",
      { name: "the chat template x.jinja" },
    );
    expect(() => templateWithSpans(t, conv, "assistant")).toThrow(
      /Cannot find assistant message 4 in the rendering of the chat template x\.jinja.*\{% generation %\}/,
    );
  });

  test("generation blocks that are not one per assistant message are refused", () => {
    const t = compileChatTemplate(
      "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
      { name: "t" },
    );
    expect(() => templateWithSpans(t, conv, "assistant")).toThrow("it has 4 {% generation %} blocks for 2 assistant");
  });

  test("a syntax error names the template", () => {
    expect(() => compileChatTemplate("{% for m in messages %}", { name: "the chat template bad.jinja" })).toThrow(
      "Cannot parse the chat template bad.jinja",
    );
  });

  test("processExample takes a template's renderer", () => {
    const ex = processExample(conv, tok, {
      maxLength: 64,
      mask: "assistant+eos",
      render: conversationRenderer(zephyr),
    })!;
    const text = zephyr.render(conv);
    expect(ex.inputIds).toEqual(tok.encode(text, { maxLength: 64 }).ids);
    const supervised = ex.inputIds.filter((_, i) => ex.labels[i] !== -100);
    expect(tok.decode(supervised)).toBe(tok.decode(tok.encode("退款申请<|im_end|>", { addSpecialTokens: false }).ids));
  });
});

describe("the model's chat template", () => {
  const withDir = async (files: Record<string, string>, f: (dir: string) => Promise<void>) => {
    const dir = await mkdtemp(join(tmpdir(), "chat-template-"));
    try {
      for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
      await f(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
  const cfg = (extra: Record<string, unknown>) =>
    JSON.stringify({ eos_token: { content: "</s>" }, bos_token: "<s>", model_max_length: 1024, ...extra });

  test("tokenizer_config.json's chat_template (string or named list) and chat_template.jinja", async () => {
    await withDir({ "tokenizer_config.json": cfg({ chat_template: "A{{ eos_token }}" }) }, async (dir) => {
      const m = await readModelChatTemplate(dir);
      expect(m.source).toBe("A{{ eos_token }}");
      expect(m.specialTokens).toEqual({ eos_token: "</s>", bos_token: "<s>" });
      const tpl = (await resolveChatTemplate("model", dir))!;
      expect(tpl.render([])).toBe("A</s>");
      expect(await resolveChatTemplate("chatml", dir)).toBeUndefined();
    });
    const list = [{ name: "tool_use", template: "T" }, { name: "default", template: "D" }];
    await withDir({ "tokenizer_config.json": cfg({ chat_template: list }) }, async (dir) => {
      expect((await readModelChatTemplate(dir)).source).toBe("D");
    });
    await withDir({ "tokenizer_config.json": cfg({ chat_template: "A" }), "chat_template.jinja": "J" }, async (dir) => {
      expect((await readModelChatTemplate(dir)).source).toBe("J");
    });
  });

  test("a model without one, a missing file, and ChatML itself", async () => {
    await withDir({ "tokenizer_config.json": cfg({}), "x.jinja": "X{{ bos_token }}" }, async (dir) => {
      await expect(resolveChatTemplate("model", dir)).rejects.toThrow(
        `Invalid --chat-template model: ${dir} has no chat template`,
      );
      await expect(resolveChatTemplate(join(dir, "nope.jinja"), dir)).rejects.toThrow("no such file");
      expect((await resolveChatTemplate(join(dir, "x.jinja"), dir))!.render([])).toBe("X<s>");
      await writeFile(join(dir, "chatml.jinja"), CHATML_TEMPLATE);
      expect(await resolveChatTemplate(join(dir, "chatml.jinja"), dir)).toBeUndefined();
    });
  });
});

describe("the generation prompt of chat", () => {
  const sys: Message = { role: "system", content: "你是客服助手。" };
  const user: Message = { role: "user", content: "你好" };

  test("without a template: the notebook's prompt, with a system message before it", () => {
    expect(generationPrompt(undefined, [user])).toBe("<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n");
    expect(generationPrompt(undefined, [sys, user])).toBe(
      "<|im_start|>system\n你是客服助手。<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(generationPrompt(templates.chatml, [sys, user])).toBe(generationPrompt(undefined, [sys, user]));
  });

  test("with the model's template", () => {
    expect(generationPrompt(templates.zephyr, [sys, user])).toBe(
      "<|system|>\n你是客服助手。\n\n<|user|>\n你好\n\n<|assistant|>\n",
    );
  });
});
