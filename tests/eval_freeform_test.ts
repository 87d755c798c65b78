// Free-form evaluation of your own conversations (src/eval/freeform*.ts, `eval.ts --test-file`), on the tiny
// fixture model as both base and SFT model: the scorers on hand-made predictions, the prompt and reference of
// a conversation, the token accuracy on hand-made logits, the loss and token accuracy against the model's
// full logits computed another way, the --json summary (with exact match checked on references made equal
// to the model's own greedy answers), the --score variants, the report files and the errors.
import { describe, expect, test } from "bun:test";
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../src/backend/cpu.ts";
import { chatmlWithSpans, type Message, promptFor } from "../src/data/chatml.ts";
import { buildSftDataset } from "../src/data/sft_dataset.ts";
import { evalMain } from "../src/cli/eval.ts";
import {
  exactMatch,
  freeformItem,
  parseScorer,
  planFreeform,
  scoreAnswer,
  wantsFreeform,
} from "../src/eval/freeform.ts";
import { argmaxMatches, conversationLoss, type FreeformReport } from "../src/eval/freeform_run.ts";
import { planEvaluation } from "../src/eval/plan.ts";
import { KvCache } from "../src/model/gpt2.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";

const FIX = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");
const BASE = join(FIX, "model-bin");

const CONVERSATIONS: Message[][] = [
  [{ role: "system", content: "你是助手" }, { role: "user", content: "你好" }, { role: "assistant", content: "您好" }],
  [
    { role: "user", content: "一加一" },
    { role: "assistant", content: "二" },
    { role: "user", content: "二加二" },
    { role: "assistant", content: "四" },
  ],
  [{ role: "user", content: "今天天气" }, { role: "assistant", content: "晴天" }],
];

const jsonl = (convs: readonly Message[][]) => convs.map((messages) => JSON.stringify({ messages })).join("\n") + "\n";

interface Setup {
  root: string;
  chatDir: string;
  testFile: string;
}
let setupPromise: Promise<Setup> | undefined;

/** A temp dir with a "chat" SFT model (the fixture + sft_task.json) and a messages test file. */
function setup(): Promise<Setup> {
  setupPromise ??= (async () => {
    const root = await mkdtemp(join(tmpdir(), "eval-freeform-"));
    const chatDir = join(root, "chat-sft");
    await cp(join(FIX, "model"), chatDir, { recursive: true });
    await writeFile(
      join(chatDir, "sft_task.json"),
      JSON.stringify({ task: "chat", model_name: BASE, mask: "assistant" }),
    );
    const testFile = join(root, "test.jsonl");
    await writeFile(testFile, jsonl(CONVERSATIONS));
    return { root, chatDir, testFile };
  })();
  return setupPromise;
}

/** Run `eval.ts` with `args` and --json; returns the parsed last line and all the lines. */
async function evalJson(args: string[]): Promise<{ json: Record<string, unknown>; lines: string[] }> {
  const lines: string[] = [];
  const code = await evalMain([...args, "--backend", "cpu", "--json", "--quiet"], (l) => lines.push(l));
  expect(code).toBe(0);
  return { json: JSON.parse(lines.at(-1)!), lines };
}

describe("free-form scorers", () => {
  test("exact match after trimming, contains, regex, json-fields", () => {
    expect(exactMatch(" 四 \n", "四")).toBe(true);
    expect(exactMatch("四。", "四")).toBe(false);
    expect(exactMatch("Four", "four")).toBe(false);
    const contains = parseScorer("contains");
    expect(scoreAnswer("答案是四。", " 四 ", contains)).toBe(true);
    expect(scoreAnswer("答案是五。", "四", contains)).toBe(false);
    const regex = parseScorer("regex:^\\d+$");
    expect(scoreAnswer(" 42\n", "anything", regex)).toBe(true);
    expect(scoreAnswer("42 apples", "anything", regex)).toBe(false);
    const fields = parseScorer("json-fields");
    const ref = '{"name": "张三", "id": 7}';
    expect(scoreAnswer('结果：{"name": "张三", "id": 7, "extra": 1}', ref, fields)).toBe(true);
    // the notebook's normalization: whitespace dropped, full-width digits made ASCII, orderid → order_id
    expect(scoreAnswer('{"name": " 张 三 ", "orderid": "１２"}', '{"name": "张三", "order_id": "12"}', fields)).toBe(
      true,
    );
    expect(scoreAnswer('{"name": "张三", "id": "7"}', ref, fields)).toBe(false); // "7" is not 7
    expect(scoreAnswer('{"name": "李四", "id": 7}', ref, fields)).toBe(false);
    expect(scoreAnswer('{"name": "张三"}', ref, fields)).toBe(false);
    expect(scoreAnswer("张三 7", ref, fields)).toBe(false);
    expect(scoreAnswer('{"name": "张三"}', "not json", fields)).toBe(false);
    expect(parseScorer("exact")).toEqual({ kind: "exact" });
    expect(() => parseScorer("fuzzy")).toThrow('Invalid --score: "fuzzy" (expected one of exact, contains');
    expect(() => parseScorer("regex:(")).toThrow("not a regular expression");
    expect(() => parseScorer("regex:")).toThrow("pattern");
  });

  test("prompt: the turns before the last assistant turn as ChatML, assistant header open", () => {
    const one = freeformItem(CONVERSATIONS[2]!, 3)!;
    expect(one.prompt).toBe(promptFor("今天天气"));
    expect(one.reference).toBe("晴天");
    const two = freeformItem(CONVERSATIONS[1]!, 2)!;
    expect(two.prompt).toBe(
      chatmlWithSpans(CONVERSATIONS[1]!.slice(0, 3), "assistant").text + "<|im_start|>assistant\n",
    );
    expect(two.reference).toBe("四");
    expect(two.question).toBe("二加二");
    expect(two.messages).toEqual(CONVERSATIONS[1]!);
    expect(freeformItem([{ role: "user", content: "hi" }], 1)).toBeUndefined();
  });

  test("token accuracy on hand-made logits: argmax per row against the target", () => {
    const V = 3;
    const logits = new Float32Array([
      0.1,
      2,
      0.3, // argmax 1
      5,
      1,
      1, // argmax 0
      0,
      0,
      9, // argmax 2
      1,
      1,
      0, // tie: the first, 0
    ]);
    expect(argmaxMatches(logits, V, [1, 0, 2, 0])).toBe(4);
    expect(argmaxMatches(logits, V, [1, 1, 2, 1])).toBe(2);
    expect(argmaxMatches(logits, V, [0, 1, 0, 2])).toBe(0);
  });
});

describe("free-form loss and token accuracy", () => {
  test("match the model's full logits: mean cross-entropy and argmax over the supervised tokens", async () => {
    const be = new CpuBackend();
    const { model, tokenizer } = await loadModelAndTokenizer(join(FIX, "model"), be, {
      prepare: false,
      warn: () => {},
    });
    try {
      const mask = "assistant+eos" as const;
      const got = await conversationLoss(model, tokenizer, CONVERSATIONS, { mask, batchSize: 2 });
      // the same examples, each run whole through the inference forward, scored on the host
      const ds = buildSftDataset(CONVERSATIONS, tokenizer, { maxLength: model.config.nPositions, mask });
      const V = model.config.vocabSize;
      let nll = 0, n = 0, right = 0;
      for (const ex of ds.examples) {
        const T = ex.inputIds.length;
        const cache = new KvCache(be, model.config, 1, T);
        const logits = await model.forwardCached({ ids: Int32Array.from(ex.inputIds), B: 1, Tn: T, pos0: 0, cache });
        cache.dispose();
        for (let t = 0; t + 1 < T; t++) {
          const y = ex.labels[t + 1]!;
          if (y === -100) continue;
          const row = logits.subarray(t * V, (t + 1) * V);
          let max = -Infinity, arg = 0;
          for (let v = 0; v < V; v++) if (row[v]! > max) [max, arg] = [row[v]!, v];
          let z = 0;
          for (let v = 0; v < V; v++) z += Math.exp(row[v]! - max);
          nll += Math.log(z) + max - row[y]!;
          n++;
          if (arg === y) right++;
        }
      }
      expect(got.tokens).toBe(n);
      expect(got.conversations).toBe(3);
      expect(Number.isFinite(got.loss)).toBe(true);
      expect(got.loss).toBeCloseTo(nll / n, 4);
      expect(got.perplexity).toBe(Math.exp(got.loss));
      expect(got.tokenAccuracy).toBe(right / n);
      // batching does not change the per-token mean
      const one = await conversationLoss(model, tokenizer, CONVERSATIONS, { mask, batchSize: 1 });
      expect(one.loss).toBeCloseTo(got.loss, 5);
      expect(one.tokenAccuracy).toBe(got.tokenAccuracy);
    } finally {
      model.dispose();
    }
  });
});

describe("eval.ts --test-file (free-form)", () => {
  test("JSON summary, report files, and exact match on references equal to the model's greedy answers", async () => {
    const { root, chatDir, testFile } = await setup();
    const reportBase = join(root, "out", "report");
    const common = ["--sft", chatDir, "--test-file", testFile, "--max-new-tokens", "6"];
    const { json } = await evalJson([...common, "--report", reportBase]);
    expect(json.task).toBe("chat");
    expect(json.format).toBe("messages");
    expect(json.test_file).toBe(testFile);
    for (const who of ["sft", "base"]) {
      const m = json[who] as Record<string, number>;
      expect(Number.isFinite(m.loss)).toBe(true);
      expect(m.perplexity).toBeCloseTo(Math.exp(m.loss!), 6);
      expect(m.token_accuracy).toBeGreaterThanOrEqual(0);
      expect(m.token_accuracy).toBeLessThanOrEqual(1);
      expect(m.conversations).toBe(3);
      expect(m.generated).toBe(3);
      expect(m.exact_match).toBeGreaterThanOrEqual(0);
      expect(m.exact_match).toBeLessThanOrEqual(1);
    }
    expect(json.exact_match).toBe((json.sft as Record<string, number>).exact_match);
    expect(json.report).toEqual({ md: `${reportBase}.md`, json: `${reportBase}.json` });
    const report = JSON.parse(await readFile(`${reportBase}.json`, "utf8")) as FreeformReport;
    expect(report.rows.map((r) => r.reference)).toEqual(["您好", "四", "晴天"]);
    expect(report.rows.map((r) => r.line)).toEqual([1, 2, 3]);
    expect(report.settings.mask).toBe("assistant");
    const md = await readFile(`${reportBase}.md`, "utf8");
    expect(md).toContain("# Evaluation: chat (free-form)");
    expect(md).toContain("| Perplexity |");
    expect(md).toContain("## Generations: base vs SFT");

    // references made the SFT model's own (trimmed) answers on conversations 1 and 3: exact match 2/3
    const answers = report.rows.map((r) => r.sft);
    const known = CONVERSATIONS.map((c, i) =>
      i === 1 ? c : [...c.slice(0, -1), { role: "assistant", content: ` ${answers[i]!.trim()}\n` }]
    );
    const knownFile = join(root, "known.jsonl");
    await writeFile(knownFile, jsonl(known));
    const k = await evalJson(["--sft", chatDir, "--test-file", knownFile, "--max-new-tokens", "6", "--no-base"]);
    expect(k.json.exact_match).toBeCloseTo(2 / 3, 12);
    expect(k.json.base).toBeUndefined();
    // --max-samples: generations for the first N only, the loss still over every conversation
    const first = await evalJson([...common, "--no-base", "--no-report", "--max-samples", "1"]);
    const sft = first.json.sft as Record<string, number>;
    expect(sft.generated).toBe(1);
    expect(sft.conversations).toBe(3);
    expect(sft.loss).toBe((json.sft as Record<string, number>).loss);
  });

  test("--score contains | regex | json-fields", async () => {
    const { root, chatDir, testFile } = await setup();
    const common = ["--sft", chatDir, "--max-new-tokens", "6", "--no-base", "--no-report"];
    // an empty reference is contained in every answer; ".*" matches every answer; "^$" none (answers are not empty)
    const empty = join(root, "empty-ref.jsonl");
    await writeFile(empty, jsonl(CONVERSATIONS.map((c) => [...c.slice(0, -1), { role: "assistant", content: "" }])));
    const c = await evalJson([...common, "--test-file", empty, "--score", "contains"]);
    expect(c.json.score_name).toBe("contains");
    expect(c.json.score).toBe(1);
    const r = await evalJson([...common, "--test-file", testFile, "--score", "regex:.*"]);
    expect(r.json.score).toBe(1);
    expect((r.json.sft as Record<string, number>).score).toBe(1);
    const none = await evalJson([...common, "--test-file", testFile, "--score", "regex:[^\\s\\S]"]);
    expect(none.json.score).toBe(0);
    // json-fields: the references must be JSON objects; the tiny model's answers are not JSON
    await expect(evalMain([...common, "--test-file", testFile, "--score", "json-fields"], () => {})).rejects.toThrow(
      `the reference answer of ${testFile}:1 (its last assistant turn) is not a JSON object`,
    );
    const jsonFile = join(root, "json-ref.jsonl");
    await writeFile(
      jsonFile,
      jsonl(CONVERSATIONS.map((c) => [...c.slice(0, -1), { role: "assistant", content: '{"a": 1}' }])),
    );
    const j = await evalJson([...common, "--test-file", jsonFile, "--score", "json-fields"]);
    expect(j.json.score).toBe(0);
    await expect(evalMain([...common, "--test-file", testFile, "--score", "fuzzy"], () => {})).rejects.toThrow(
      'Invalid --score: "fuzzy"',
    );
  });

  test("other formats; a notebook-task model with a conversation file; the errors", async () => {
    const { root, chatDir, testFile } = await setup();
    // ShareGPT and prompt-completion read to the same items
    const share = join(root, "share.jsonl");
    await writeFile(
      share,
      JSON.stringify({ conversations: [{ from: "human", value: "今天天气" }, { from: "gpt", value: "晴天" }] }) + "\n",
    );
    const pc = join(root, "pc.jsonl");
    await writeFile(pc, JSON.stringify({ prompt: "今天天气", completion: "晴天" }) + "\n");
    const a = await planFreeform({ sftDir: chatDir, testFile: share });
    const b = await planFreeform({ sftDir: chatDir, testFile: pc, format: "prompt-completion" });
    expect(a.format).toBe("sharegpt");
    expect(b.items.map((x) => [x.prompt, x.reference])).toEqual(a.items.map((x) => [x.prompt, x.reference]));
    expect(a.items[0]!.prompt).toBe(promptFor("今天天气"));
    // a conversation with no assistant turn is skipped, its line kept
    const partial = join(root, "partial.jsonl");
    await writeFile(partial, jsonl([CONVERSATIONS[0]!, [{ role: "user", content: "你好" }], CONVERSATIONS[2]!]));
    const p = await planFreeform({ sftDir: chatDir, testFile: partial, maxSamples: 1 });
    expect(p.items.map((x) => x.line)).toEqual([1, 3]);
    expect(p.skipped).toEqual([2]);
    expect(p.evaluated.length).toBe(1);
    expect(p.mask).toBe("assistant");

    // a classification model: a file of conversations is evaluated free-form; a notebook file is not
    const clsDir = join(root, "cls-sft");
    await cp(join(FIX, "model"), clsDir, { recursive: true });
    await writeFile(join(clsDir, "sft_task.json"), JSON.stringify({ task: "classification", model_name: BASE }));
    const meta = { task: "classification" };
    expect(await wantsFreeform({ testFile }, meta)).toBe(true);
    const nb = join(root, "nb.jsonl");
    await writeFile(
      nb,
      JSON.stringify({ instruction: "x", response: "y", category: "c", metric: "text", expected: "y" }),
    );
    expect(await wantsFreeform({ testFile: nb }, meta)).toBe(false);
    expect(await wantsFreeform({ testFile: nb, format: "notebook" }, meta)).toBe(true);
    expect(await wantsFreeform({ testFile: nb, task: "chat" }, meta)).toBe(true);
    const cls = await evalJson(["--sft", clsDir, "--test-file", testFile, "--max-new-tokens", "4", "--no-report"]);
    expect(cls.json.task).toBe("chat");
    expect((cls.json.sft as Record<string, number>).conversations).toBe(3);

    // a chat model without --test-file: say to pass one (the CLI and the planners)
    await expect(evalMain(["--sft", chatDir, "--backend", "cpu"], () => {})).rejects.toThrow(
      /says task "chat"\) is evaluated on your own test conversations; pass --test-file FILE\.jsonl/,
    );
    await expect(planFreeform({ sftDir: chatDir })).rejects.toThrow("pass --test-file");
    await expect(planEvaluation({ sftDir: chatDir })).rejects.toThrow("pass --test-file");
    // plain text has no reference answer; --labels and --plain belong to the notebook's tasks
    const text = join(root, "text.jsonl");
    await writeFile(text, JSON.stringify({ text: "今天天气晴天" }) + "\n");
    await expect(planFreeform({ sftDir: chatDir, testFile: text })).rejects.toThrow('plain text ("text" format)');
    await expect(evalMain(["--sft", chatDir, "--test-file", testFile, "--labels", "a,b"], () => {})).rejects
      .toThrow("Invalid --labels: free-form evaluation has no labels");
    await expect(evalMain(["--sft", chatDir, "--test-file", testFile, "--format", "yaml"], () => {})).rejects
      .toThrow('Invalid --format: "yaml"');
  });
});

describe("the generation prompt of a conversation", () => {
  test("keeps the framing before the text and drops the one after it ([SEP])", async () => {
    const { openPromptIds } = await import("../src/eval/predictors.ts");
    const { loadTokenizer } = await import("../src/tokenizer/load.ts");
    const fixtures = new URL("./fixtures/", import.meta.url).pathname;
    const bert = await loadTokenizer(fixtures + "tiny-gpt2-zh/model");
    const prompt = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n";
    const bare = bert.encode(prompt, { addSpecialTokens: false }).ids;
    expect(openPromptIds(bert, prompt)).toEqual([2, ...bare]); // [CLS] …, no [SEP]
    const bpe = await loadTokenizer(fixtures + "tiny-gpt2-bpe/model");
    expect(openPromptIds(bpe, "Hello world")).toEqual(bpe.encode("Hello world").ids);
  });
});

describe("answers as the scorers compare them", () => {
  test("trimmed, without the spaces a WordPiece decoding puts between CJK characters", async () => {
    const { comparable, exactMatch, scoreAnswer } = await import("../src/eval/freeform.ts");
    expect(comparable(" 退 款 申 请 \n")).toBe("退款申请");
    expect(comparable("order OD 12 你 好 world")).toBe("order OD 12你好world");
    expect(exactMatch("退 款 申 请", "退款申请")).toBe(true);
    expect(exactMatch("退 款", "退款申请")).toBe(false);
    expect(exactMatch("a b", "ab")).toBe(false);
    expect(scoreAnswer("类 别 ： 退 款 申 请", "退款申请", { kind: "contains" })).toBe(true);
  });
});
