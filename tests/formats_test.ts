/**
 * Your own chat data: the formats (messages, ShareGPT, prompt/completion, text, the notebook's records),
 * their errors (file, line and field), conversations skipped for having nothing to learn, the per-turn loss
 * masks (weight 0, --train-on last) and the --val-split shuffle.
 */
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectFormat, parseChatData, splitValidation } from "../src/data/formats.ts";
import { chatmlWithSpans, IM_END, type Message } from "../src/data/chatml.ts";
import { processExample } from "../src/data/sft_dataset.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { trainMain } from "../src/cli/train.ts";

const FIXTURE = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");
const jsonl = (...records: unknown[]) => records.map((r) => JSON.stringify(r)).join("\n") + "\n";
const chat = (data: ReturnType<typeof parseChatData>, i: number) => {
  const ex = data.examples[i]!;
  if (ex.kind !== "chat") throw new Error("not a conversation");
  return ex.messages;
};

describe("chat data formats", () => {
  test("messages, with system prompts, several turns and weight 0", () => {
    const data = parseChatData(
      jsonl(
        {
          messages: [
            { role: "system", content: "你是客服" },
            { role: "user", content: "你好" },
            { role: "assistant", content: "您好", weight: 0 },
            { role: "user", content: "退款" },
            { role: "assistant", content: "好的" },
          ],
        },
        { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] },
      ),
      "f.jsonl",
    );
    expect(data.format).toBe("messages");
    expect(data.examples.length).toBe(2);
    expect(chat(data, 0)[2]).toEqual({ role: "assistant", content: "您好", weight: 0 });
  });

  test("ShareGPT: human / gpt / system become user / assistant / system", () => {
    const data = parseChatData(
      jsonl({
        conversations: [{ from: "system", value: "s" }, { from: "human", value: "q" }, { from: "gpt", value: "a" }],
      }),
      "f.jsonl",
    );
    expect(data.format).toBe("sharegpt");
    expect(chat(data, 0).map((m) => m.role)).toEqual(["system", "user", "assistant"]);
  });

  test("prompt/completion: strings or message lists (only the completion carries loss)", () => {
    const data = parseChatData(
      jsonl(
        { prompt: "q", completion: "a" },
        {
          prompt: [{ role: "user", content: "q1" }, { role: "assistant", content: "a1" }, {
            role: "user",
            content: "q2",
          }],
          completion: [{ role: "assistant", content: "a2" }],
        },
      ),
      "f.jsonl",
    );
    expect(data.format).toBe("prompt-completion");
    expect(chat(data, 0)).toEqual([{ role: "user", content: "q" }, { role: "assistant", content: "a" }]);
    expect(chat(data, 1)[1]).toEqual({ role: "assistant", content: "a1", weight: 0 });
    const { text, spans } = chatmlWithSpans(chat(data, 1), "assistant");
    expect(spans.map(([a, b]) => text.slice(a, b))).toEqual(["a2"]);
  });

  test("text and the notebook's records", () => {
    const text = parseChatData(jsonl({ text: "plain text" }), "f.jsonl");
    expect(text.format).toBe("text");
    expect(text.examples[0]).toEqual({ kind: "text", text: "plain text", line: 1 });
    const nb = parseChatData(jsonl({ instruction: "q", response: "a", category: "x" }), "f.jsonl");
    expect(nb.format).toBe("notebook");
    expect(chat(nb, 0)).toEqual([{ role: "user", content: "q" }, { role: "assistant", content: "a" }]);
    expect(detectFormat({ other: 1 })).toBeUndefined();
  });

  test("bad records name the file, the line and the field", () => {
    const bad = (text: string, format?: "messages") => () => parseChatData(text, "d.jsonl", format);
    expect(bad(jsonl({ foo: 1 }))).toThrow('d.jsonl:1: cannot tell the data format from the keys ("foo")');
    expect(bad(jsonl({ messages: [] }, { messages: "x" }))).toThrow('d.jsonl:2: field "messages" must be a list');
    expect(bad(jsonl({ messages: [{ role: "user" }] }))).toThrow(
      'd.jsonl:1: field "messages"[0].content must be a string',
    );
    expect(bad(jsonl({ messages: [{ role: "user", content: "q", weight: 0 }] }))).toThrow(
      "weight is only allowed on assistant messages",
    );
    expect(bad(jsonl({ messages: [{ role: "assistant", content: "a", weight: 2 }] }))).toThrow("weight must be 0 or 1");
    expect(bad(jsonl({ conversations: [{ from: "bot", value: "a" }] }))).toThrow(
      'd.jsonl:1: field "conversations[0].from" is "bot"; expected system, human or gpt',
    );
    expect(bad(jsonl({ text: "x" }), "messages")).toThrow('d.jsonl:1: missing field "messages" (a messages record)');
    expect(bad("\n{oops\n")).toThrow("d.jsonl:2: invalid JSON");
  });

  test("a conversation with no assistant turn to learn is skipped and counted", () => {
    const data = parseChatData(
      jsonl(
        { messages: [{ role: "user", content: "q" }] },
        { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a", weight: 0 }] },
        { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }] },
      ),
      "f.jsonl",
    );
    expect(data.skipped).toEqual([1, 2]);
    expect(data.examples.map((e) => e.line)).toEqual([3]);
  });
});

describe("per-turn loss masks", () => {
  const turns: Message[] = [
    { role: "system", content: "S" },
    { role: "user", content: "Q1" },
    { role: "assistant", content: "A1" },
    { role: "user", content: "Q2" },
    { role: "assistant", content: "A2" },
  ];
  const supervised = (m: Message[], mode: "assistant" | "assistant+eos", trainOn?: "all" | "last") => {
    const { text, spans } = chatmlWithSpans(m, mode, trainOn);
    return spans.map(([a, b]) => text.slice(a, b));
  };

  test("every assistant turn, or the last; weight 0 turns never", () => {
    expect(supervised(turns, "assistant")).toEqual(["A1", "A2"]);
    expect(supervised(turns, "assistant", "last")).toEqual(["A2"]);
    expect(supervised(turns, "assistant+eos")).toEqual([`A1${IM_END}`, `A2${IM_END}`]);
    const w0 = turns.map((m) => (m.content === "A2" ? { ...m, weight: 0 as const } : m));
    expect(supervised(w0, "assistant")).toEqual(["A1"]);
    // the last turn that carries loss, when the last assistant turn has weight 0
    expect(supervised(w0, "assistant", "last")).toEqual(["A1"]);
  });

  test("edge cases: empty content, unknown roles, system later, consecutive users, <|im_end|> in content", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    tok.prepareForSft();
    const opts = { maxLength: 160, mask: "assistant" as const };
    // an empty answer has nothing to learn
    expect(processExample([{ role: "user", content: "q" }, { role: "assistant", content: "" }], tok, opts))
      .toBeUndefined();
    const odd: Message[] = [
      { role: "user", content: "你好" },
      { role: "user", content: "在吗" },
      { role: "tool", content: "{}" },
      { role: "system", content: "晚到的系统提示" },
      { role: "assistant", content: `好的${IM_END}谢谢` },
    ];
    const ex = processExample(odd, tok, opts)!;
    const imEnd = tok.tokenToId(IM_END)!;
    // the answer's tokens, the <|im_end|> written inside it included, and nothing before it
    const sup = ex.inputIds.filter((_, i) => ex.labels[i] !== -100);
    const id = (c: string) => tok.tokenToId(c) ?? tok.unkTokenId;
    expect(sup).toEqual([id("好"), id("的"), imEnd, id("谢"), id("谢")]);
    // longer than max-length: truncated from the right; dropped when no supervised token survives
    expect(processExample(odd, tok, { ...opts, maxLength: 8 })).toBeUndefined();
    const long = processExample(odd, tok, { ...opts, maxLength: ex.inputIds.length - 2 })!;
    expect(long.inputIds).toEqual([...ex.inputIds.slice(0, ex.inputIds.length - 3), ex.inputIds.at(-1)!]);
  });

  test("plain text trains every token", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    const ex = processExample({ text: "你好" }, tok, { maxLength: 16, mask: "assistant" })!;
    expect(ex.labels).toEqual(ex.inputIds);
  });
});

describe("--val-split", () => {
  test("a seeded, stable split that keeps file order", () => {
    const xs = [...Array(20).keys()];
    const a = splitValidation(xs, 0.25, 42), b = splitValidation(xs, 0.25, 42), c = splitValidation(xs, 0.25, 7);
    expect(a.val.length).toBe(5);
    expect(a).toEqual(b);
    expect(a.val).not.toEqual(c.val);
    expect([...a.train, ...a.val].sort((x, y) => x - y)).toEqual(xs);
    expect(a.val).toEqual([...a.val].sort((x, y) => x - y));
    expect(splitValidation([1], 0.5, 1).val).toEqual([]);
    expect(() => splitValidation(xs, 1, 1)).toThrow("Invalid --val-split 1");
  });
});

describe("deno task train --train-file", () => {
  test("trains on a messages file, saves task chat, resumes from the checkpoint's file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sft-chat-"));
    try {
      const file = join(dir, "chat.jsonl");
      const rows = Array.from({ length: 12 }, (_, i) => ({
        messages: [
          { role: "system", content: "你是客服" },
          { role: "user", content: `订单${i}到了吗` },
          { role: "assistant", content: i % 2 ? "已发货" : "未发货" },
        ],
      }));
      await writeFile(file, jsonl(...rows, { messages: [{ role: "user", content: "只有问题" }] }));
      const out = join(dir, "model"), run = join(dir, "run");
      const base = join(FIXTURE, "model-bin");
      const lines: string[] = [];
      const args = ["--model", base, "--backend", "cpu", "--train-file", file, "--val-split", "0.25", "--quiet"];
      expect(
        await trainMain(
          [...args, "--max-steps", "2", "--batch-size", "2", "--out", out, "--run-dir", run],
          (l) => lines.push(l),
        ),
      ).toBe(0);
      expect(lines).toContain(`Data: ${file} (format messages): 12 examples`);
      expect(lines.some((l) => l.startsWith("Skipped 1 conversation of") && l.endsWith("line 13"))).toBe(true);
      expect(lines).toContain("Processed 9/9 examples");
      expect(lines).toContain("Processed 3/3 examples");
      const meta = JSON.parse(await readFile(join(out, "sft_task.json"), "utf8"));
      expect(meta.task).toBe("chat");
      // --resume alone finds the data file in the checkpoint
      const again: string[] = [];
      expect(
        await trainMain(
          ["--resume", "--run-dir", run, "--max-steps", "3", "--backend", "cpu", "--quiet"],
          (l) => again.push(l),
        ),
      ).toBe(0);
      expect(again.some((l) => l.startsWith("Resumed from") && l.includes("at step 2"))).toBe(true);
      await expect(trainMain([...args, "--task", "classification", "--out", out, "--run-dir", run], () => {}))
        .rejects.toThrow("Invalid --task with --train-file");
      await expect(trainMain(["--format", "text", "--backend", "cpu"], () => {})).rejects.toThrow(
        "Invalid --format: it goes with --train-file",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("deno task show-masking --train-file --json", () => {
  test("one JSON object per example, in file order, labels −100 outside the answers", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mask-json-"));
    try {
      const file = join(dir, "chat.jsonl");
      await writeFile(
        file,
        jsonl(
          { messages: [{ role: "user", content: "你好" }, { role: "assistant", content: "您好" }] },
          { messages: [{ role: "user", content: "只有问题" }] },
          { messages: [{ role: "user", content: "在吗" }, { role: "assistant", content: "在" }] },
        ),
      );
      const { main } = await import("../src/cli/show_masking.ts");
      const model = join(FIXTURE, "model");
      const lines: string[] = [];
      expect(await main(["--model", model, "--train-file", file, "--json"], (l) => lines.push(l))).toBe(0);
      expect(lines.length).toBe(2); // the second conversation has nothing to learn
      const tok = await BertTokenizer.fromDir(model);
      const rows = lines.map((l) => JSON.parse(l) as { input_ids: number[]; labels: number[] });
      const answers = rows.map((r) => {
        expect(r.labels.length).toBe(r.input_ids.length);
        expect(r.labels.every((l, i) => l === -100 || l === r.input_ids[i])).toBe(true);
        return tok.decode(r.labels.filter((l) => l !== -100));
      });
      // the default mask, assistant+eos: the answer and its closing <|im_end|>
      expect(answers).toEqual([`[UNK] 好 ${IM_END}`, `在 ${IM_END}`]); // 您 is not in the tiny vocabulary
      const sharegpt = join(dir, "sg.jsonl");
      await writeFile(sharegpt, jsonl({ conversations: [{ from: "human", value: "q" }, { from: "gpt", value: "a" }] }));
      await expect(main(["--model", model, "--train-file", sharegpt, "--format", "messages", "--json"], () => {}))
        .rejects.toThrow(`${sharegpt}:1: missing field "messages"`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
