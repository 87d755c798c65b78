/**
 * `--chat-template` on deno task train and show-masking: the conversations rendered by a Jinja template,
 * the loss on its assistant turns, the template saved in the model's tokenizer_config.json (ChatML as
 * CHATML_TEMPLATE by default), and the errors: a role the template refuses (naming the line), the flag
 * without --train-file, a missing file, a model without a template.
 */
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainMain } from "../src/cli/train.ts";
import { main as showMasking } from "../src/cli/show_masking.ts";
import { CHATML_TEMPLATE, compileChatTemplate } from "../src/data/template.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";

const FIXTURE = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");
const jsonl = (...records: unknown[]) => records.map((r) => JSON.stringify(r)).join("\n") + "\n";
/** Knows three roles; the answers and their <|im_end|> are generation blocks. */
const TEMPLATE = "{% for m in messages %}" +
  "{% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('Unknown role: ' + m['role']) }}{% endif %}" +
  "{{ '<|' + m['role'] + '|>\\n' }}" +
  "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}" +
  "{% else %}{{ m['content'] }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "chat-template-cli-"));
  try {
    await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const rows = Array.from({ length: 4 }, (_, i) => ({
  messages: [
    { role: "system", content: "你是客服" },
    { role: "user", content: `订单${i}到了吗` },
    { role: "assistant", content: i % 2 ? "已发货" : "未发货" },
  ],
}));

describe("deno task train --chat-template", () => {
  test("a Jinja file renders the data and is saved as chat_template; ChatML is saved by default", async () => {
    await withDir(async (dir) => {
      const file = join(dir, "chat.jsonl"), tpl = join(dir, "t.jinja");
      await writeFile(file, jsonl(...rows));
      await writeFile(tpl, TEMPLATE);
      const base = join(FIXTURE, "model-bin");
      const common = ["--model", base, "--backend", "cpu", "--train-file", file, "--quiet", "--max-steps", "1"];
      const lines: string[] = [];
      const run = (name: string, extra: string[]) =>
        trainMain(
          [...common, ...extra, "--out", join(dir, name), "--run-dir", join(dir, `run-${name}`)],
          (l) => lines.push(l),
        );
      expect(await run("tpl", ["--chat-template", tpl])).toBe(0);
      expect(lines).toContain(`  Chat template: the chat template ${tpl}`);
      const saved = JSON.parse(await readFile(join(dir, "tpl", "tokenizer_config.json"), "utf8"));
      expect(saved.chat_template).toBe(TEMPLATE);
      // --resume renders with the template its checkpoint carries
      const resumed: string[] = [];
      const resume = ["--resume", "--run-dir", join(dir, "run-tpl"), "--max-steps", "2", "--backend", "cpu", "--quiet"];
      expect(await trainMain(resume, (l) => resumed.push(l))).toBe(0);
      expect(resumed.some((l) => l.startsWith("  Chat template: the chat template of ") && l.includes("checkpoint")))
        .toBe(true);
      // … and refuses another one given on the command line (the same file is fine)
      await expect(trainMain([...resume, "--max-steps", "3", "--chat-template", "chatml"], () => {})).rejects.toThrow(
        `Cannot resume from ${join(dir, "run-tpl", "checkpoint")}: --chat-template chatml is not the template the ` +
          "checkpoint was trained with",
      );
      expect(await trainMain([...resume, "--max-steps", "3", "--chat-template", tpl], () => {})).toBe(0);
      // a LoRA run's checkpoint (an adapter directory, not the model loaded) keeps its template too
      const loraLines: string[] = [];
      expect(await run("lora", ["--chat-template", tpl, "--lora"])).toBe(0);
      const loraResume = ["--resume", "--run-dir", join(dir, "run-lora"), "--max-steps", "2", "--quiet"];
      expect(await trainMain(loraResume, (l) => loraLines.push(l))).toBe(0);
      expect(loraLines.some((l) => l.startsWith("  Chat template: the chat template of ") && l.includes("checkpoint")))
        .toBe(true);
      expect(await run("chatml", [])).toBe(0);
      const chatml = JSON.parse(await readFile(join(dir, "chatml", "tokenizer_config.json"), "utf8"));
      expect(chatml.chat_template).toBe(CHATML_TEMPLATE);
      // --chat-template model takes the saved model's template back
      expect(
        await trainMain([
          "--model",
          join(dir, "tpl"),
          ...common.slice(2),
          "--chat-template",
          "model",
          "--out",
          join(dir, "again"),
          "--run-dir",
          join(dir, "run-again"),
        ], (l) => lines.push(l)),
      ).toBe(0);
      const again = JSON.parse(await readFile(join(dir, "again", "tokenizer_config.json"), "utf8"));
      expect(again.chat_template).toBe(TEMPLATE);
    });
  }, 120_000);

  test("a role the template refuses names the line; the flag needs --train-file and an existing file", async () => {
    await withDir(async (dir) => {
      const file = join(dir, "chat.jsonl"), tpl = join(dir, "t.jinja");
      const bad = {
        messages: [{ role: "user", content: "hi" }, { role: "tool", content: "42" }, rows[0]!.messages[2]],
      };
      await writeFile(file, jsonl(rows[0], rows[1], bad));
      await writeFile(tpl, TEMPLATE);
      const args = ["--model", join(FIXTURE, "model-bin"), "--backend", "cpu", "--train-file", file, "--quiet"];
      const out = ["--out", join(dir, "m"), "--run-dir", join(dir, "r")];
      await expect(trainMain([...args, ...out, "--chat-template", tpl], () => {})).rejects.toThrow(
        `Cannot render line 3 of chat.jsonl: the chat template ${tpl} refused the conversation: Unknown role: tool`,
      );
      await expect(trainMain(["--chat-template", tpl, "--backend", "cpu"], () => {})).rejects.toThrow(
        "Invalid --chat-template: it goes with --train-file",
      );
      await expect(trainMain([...args, ...out, "--chat-template", join(dir, "none.jinja")], () => {})).rejects
        .toThrow("Invalid --chat-template " + join(dir, "none.jinja") + ": no such file");
      await expect(trainMain([...args, ...out, "--chat-template", "model"], () => {})).rejects.toThrow(
        "has no chat template",
      );
    });
  }, 60_000);
});

describe("deno task show-masking --chat-template", () => {
  test("--json labels the template's generation blocks; an unknown role names the line", async () => {
    await withDir(async (dir) => {
      const file = join(dir, "chat.jsonl"), tpl = join(dir, "t.jinja");
      await writeFile(file, jsonl(rows[0], rows[1]));
      await writeFile(tpl, TEMPLATE);
      const model = join(FIXTURE, "model");
      const lines: string[] = [];
      const args = ["--model", model, "--train-file", file, "--json", "--chat-template", tpl];
      expect(await showMasking(args, (l) => lines.push(l))).toBe(0);
      const tok = await BertTokenizer.fromDir(model);
      tok.prepareForSft();
      const t = compileChatTemplate(TEMPLATE);
      const r0 = JSON.parse(lines[0]!) as { input_ids: number[]; labels: number[] };
      expect(r0.input_ids).toEqual(tok.encode(t.render(rows[0]!.messages), { maxLength: 256 }).ids);
      expect(tok.decode(r0.labels.filter((l) => l !== -100))).toBe("[UNK] 发 货 <|im_end|>"); // 未 is not in the tiny vocabulary;
      // the default renders ChatML
      const chatml: string[] = [];
      expect(await showMasking(args.slice(0, 5), (l) => chatml.push(l))).toBe(0);
      expect(chatml[0]).not.toBe(lines[0]);
      await writeFile(file, jsonl(rows[0], { messages: [{ role: "tool", content: "x" }, rows[0]!.messages[2]] }));
      await expect(showMasking(args, () => {})).rejects.toThrow(
        `Cannot render line 2 of ${file}: the chat template ${tpl} refused the conversation: Unknown role: tool`,
      );
      await expect(showMasking(["--model", model, "--chat-template", "chatml"], () => {})).rejects.toThrow(
        "Invalid --chat-template: it goes with --train-file",
      );
    });
  });
});
