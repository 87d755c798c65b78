// The notebook's Part 6 scoring (src/eval/metrics.ts) and the evaluation report (src/eval/report.ts).
// Every expected value below was produced by running the notebook's own Python functions (copied from
// ch8_sft_notebook.txt) under python3 3.11 on the same inputs. Comparisons are exact (strings, booleans).
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cleanGenerated,
  extractJson,
  extractNumber,
  normalizeJsonObj,
  normalizeText,
  parsePlainFields,
  pyEquals,
  pyJsonLoads,
  pySlice,
  pySplit,
  pyStrip,
  type ScoredRecord,
  scorePrediction,
  summarize,
} from "../src/eval/metrics.ts";
import {
  colorEnabled,
  confusionSvg,
  type EvalReport,
  formatPercent,
  labelScoreLine,
  renderConsole,
  renderMarkdown,
  writeReport,
} from "../src/eval/report.ts";
import { confusionMatrix, renderConfusionConsole, renderConfusionMarkdown } from "../src/eval/confusion.ts";
import { fieldScores, renderFieldsConsole, renderFieldsMarkdown } from "../src/eval/fields.ts";
import { summaryRecord } from "./helpers/summary_record.ts";
import { outputSettings } from "../src/env.ts";

const EXPECTED_JSON = '{"name": "陈洁", "email": "chen.jie@example.com", "order_id": "OD20240105-1234"}';
const text = (expected: string): ScoredRecord => ({ metric: "text", expected });
const numeric = (expected: string): ScoredRecord => ({ metric: "numeric", expected });
const json = (expected: string): ScoredRecord => ({ metric: "json", expected });

describe("score_prediction", () => {
  test("text: the label inside a longer output, special tokens and case/whitespace ignored", () => {
    expect(scorePrediction("<|im_start|>用户诉求类别：退款申请。[SEP]", text("退款申请"))).toBe(true);
    expect(scorePrediction("延迟发货", text("退款申请"))).toBe(false);
    // U+3000 and U+001C are whitespace to Python's split().
    expect(scorePrediction("  The   Answer IS Refund\u3000", text("answer  is\x1crefund"))).toBe(true);
    expect(scorePrediction(null, text("x"))).toBe(false);
  });

  test("numeric: first -?\\d+ of the normalized prediction equals expected as a string", () => {
    expect(scorePrediction("答案是 42 个", numeric("42"))).toBe(true);
    expect(scorePrediction("温度 -7 度，或 3", numeric("-7"))).toBe(true);
    // Python's \d matches full-width digits, and "１２" != "12".
    expect(scorePrediction("１２", numeric("12"))).toBe(false);
    expect(scorePrediction("１２", numeric("１２"))).toBe(true);
    expect(scorePrediction("no number", numeric("1"))).toBe(false);
  });

  test("json: ## artefacts, full-width digits, whitespace and the orderid key are normalized", () => {
    const pred =
      '结果：{"na##me": "陈 洁", "email": "chen.jie@example.com", "orderid": "OD２０２４０１０５-１２３４"}<|im_end|>';
    expect(scorePrediction(pred, json(EXPECTED_JSON))).toBe(true);
    expect(scorePrediction('{"order__id": "1"}', json('{"order_id": "1"}'))).toBe(true);
  });

  test("json: the last parseable {...} wins; nested objects do not parse (non-greedy match)", () => {
    const good = '{"name": "陈洁", "email": "chen.jie@example.com", "order_id": "OD20240105-1234"}';
    expect(scorePrediction(`{"name": "x"} 然后 ${good} {broken`, json(EXPECTED_JSON))).toBe(true);
    expect(scorePrediction(`${good} {"name": "x"}`, json(EXPECTED_JSON))).toBe(false);
    expect(scorePrediction('{"a": {"b": 1}}', json('{"a": {"b": 1}}'))).toBe(false);
  });

  test("json: Python equality and json.loads quirks (1 == True, NaN literal, expected null)", () => {
    expect(scorePrediction('{"n": 1}', json('{"n": true}'))).toBe(true);
    expect(scorePrediction('{"n": NaN}', json('{"n": NaN}'))).toBe(true);
    expect(scorePrediction('{"n": 1}', json("null"))).toBe(false);
  });

  test("json with plain fields (USE_PLAIN_EVAL)", () => {
    const plain = { plain: true };
    const cases: [string, boolean][] = [
      ["姓名：陈洁；邮箱：chen.jie@example.com；订单号：OD20240105-1234", true],
      ["姓名： 陈 洁 ；邮箱：chen.jie@example.com；订单号：OD２０２４０１０５-１２３４<|im_end|>", true],
      ["姓名：陈洁；邮箱：无；订单号：OD20240105-1234", false],
      ["姓名陈洁，邮箱chen.jie@example.com，订单号OD20240105-1234。", true],
      ["姓名：王伟；邮箱：chen.jie@example.com；订单号：OD20240105-1234", false],
    ];
    for (const [pred, want] of cases) expect(scorePrediction(pred, json(EXPECTED_JSON), plain)).toBe(want);
    expect(parsePlainFields("姓名： 陈 洁 ；邮箱：chen.jie@example.com；订单号：OD２０２４０１０５-１２３４")).toEqual({
      name: "陈洁",
      email: "chen.jie@example.com",
      order_id: "OD20240105-1234",
    });
    expect(parsePlainFields("姓名：陈洁；邮箱：无；订单号：OD20240105-1234")).toBeNull();
  });
});

describe("helpers", () => {
  test("clean_generated / normalize_text with Python's whitespace set", () => {
    expect(cleanGenerated(null)).toBe("");
    expect(cleanGenerated(" [CLS]<|im_start|>hi<|user|>[SEP] ")).toBe("hi");
    // Python keeps U+FEFF (not whitespace to it) and splits on U+001C and U+0085.
    expect(normalizeText("\ufeffHello\u3000World\x1c!\x85 ")).toBe("\ufeffhello world !");
    expect(pyStrip("\x85 a \ufeff")).toBe("a \ufeff");
    expect(pySplit(" a\u2003b  c ")).toEqual(["a", "b", "c"]);
  });

  test("extract_number, extract_json, normalize_json_obj", () => {
    expect(extractNumber("ab-12cd 5")).toBe("-12");
    expect(extractNumber("٣٤")).toBe("٣٤"); // Arabic-Indic digits are \d to Python
    expect(extractNumber("none")).toBeNull();
    expect(extractJson('a {"x": 1} b {"y": [1, 2]} c')).toEqual({ y: [1, 2] });
    expect(extractJson('{"a": {"b": 1}}')).toBeNull();
    expect(extractJson("no braces")).toBeNull();
    expect(normalizeJsonObj({ "order##id": "OD １", "e mail": 3, x: null })).toEqual({
      order_id: "OD1",
      email: 3,
      x: null,
    });
    expect(normalizeJsonObj([1])).toEqual([1]);
  });

  test("pyJsonLoads is strict JSON plus NaN/Infinity; __proto__ stays a plain key", () => {
    expect(pyJsonLoads(' {"a": [1, -2.5e1, true, null, "\\u00e9"], "b": -Infinity} ')).toEqual({
      a: [1, -25, true, null, "é"],
      b: -Infinity,
    });
    for (const bad of ["{'a': 1}", '{"a": 1,}', "[1,]", "01", '{"a" 1}', '"\t"', "{} x", "-NaN"]) {
      expect(() => pyJsonLoads(bad)).toThrow("Cannot parse JSON");
    }
    const o = pyJsonLoads('{"__proto__": {"x": 1}}') as Record<string, unknown>;
    expect(Object.keys(o)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
    expect(pyEquals({ a: [1, false] }, { a: [1.0, 0] })).toBe(true);
    expect(pyEquals({ a: "1" }, { a: 1 })).toBe(false);
    expect(pyEquals({ a: 1 }, { a: 1, b: 2 })).toBe(false);
  });

  test("pySlice counts code points as Python's [:n]", () => {
    expect(pySlice("😀abc", 2)).toBe("😀a");
    expect(pySlice("ab", 80)).toBe("ab");
  });
});

describe("summarize and report", () => {
  // 1 of 16 correct is 6.25%: Python prints "6.2%" (half to even on the exact value); toFixed would say 6.3.
  const sftItems = [
    ...Array.from({ length: 16 }, (_, i) => ({ category: "诉求分类", correct: i === 0 })),
    { category: "数学", correct: true },
    { category: "诉求分类", correct: false },
  ];

  test("per-category accuracy in first-seen order, then overall", () => {
    const s = summarize(sftItems);
    expect(s.categories.map((c) => c.category)).toEqual(["诉求分类", "数学"]);
    expect(s.categories[0]).toEqual({ category: "诉求分类", correct: 1, total: 17, accuracy: 1 / 17 });
    expect(s.overall).toEqual({ category: "overall", correct: 2, total: 18, accuracy: 2 / 18 });
    expect(summaryRecord(s)).toEqual({ "诉求分类": 1 / 17, "数学": 1, overall: 2 / 18 });
    expect(formatPercent(summarize(sftItems.slice(0, 16)).overall.accuracy)).toBe("6.2%");
    expect(() => summarize([])).toThrow("no results");
  });

  function report(): EvalReport {
    const long = "退款申请".repeat(30); // 120 characters: shown as the first 80
    return {
      task: "classification",
      model: "uer/gpt2-chinese-cluecorpussmall",
      checkpoint: "models/sft",
      base: summarize([{ category: "诉求分类", correct: false }, { category: "诉求分类", correct: true }]),
      sft: summarize(sftItems.slice(0, 16)),
      samples: [
        { instruction: "Q1 | pipe", expected: "退款申请", pred: long, correct: true },
        { instruction: "Q2", expected: "延迟发货", pred: "地址修改", correct: false },
      ],
      comparison: [{
        instruction: "Q1",
        expected: "退款申请",
        base: "续写<|im_end|>",
        baseCorrect: false,
        sft: "退款申请",
        sftCorrect: true,
      }],
      settings: {
        maxSamples: 200,
        maxNewTokens: 120,
        doSample: false,
        temperature: 0,
        topP: 1,
        repetitionPenalty: 1.1,
        noRepeatNgramSize: 3,
        classifier: true,
        plain: false,
        labels: ["延迟发货", "退款申请"],
        backend: "cpu",
        startedAt: "2025-01-01T00:00:00.000Z",
      },
      seconds: 83.25,
    };
  }

  test("markdown: summary table, truncated samples, comparison, settings", () => {
    const m = renderMarkdown(report());
    expect(m).toContain("| Category | Base | SFT |");
    expect(m).toContain("| 诉求分类 | 50.0% (1/2) | 6.2% (1/16) |");
    expect(m).toContain("| **overall** | **50.0%** (1/2) | **6.2%** (1/16) |");
    expect(m).toContain(`| ${"退款申请".repeat(20)} | ✓ |`);
    expect(m).not.toContain("退款申请".repeat(21));
    expect(m).toContain("Q1 \\| pipe");
    expect(m).toContain("| 1 | Q1 | 退款申请 | ✗ 续写&lt;\\|im_end\\|&gt; | ✓ 退款申请 |");
    expect(m).toContain("| Decoding | greedy |");
    expect(m).toContain("| Time | 83.2 s (1m23s) |"); // 83.25 → "83.2" (half to even)
    const noBase = renderMarkdown({ ...report(), base: undefined });
    expect(noBase).toContain("| 诉求分类 | 6.2% (1/16) |");
  });

  test("console: the notebook's printout, coloured unless told not to", () => {
    const plain = renderConsole(report(), { color: false });
    expect(plain).toContain("Base model:\n  诉求分类: 50.0%\n  overall: 50.0%");
    expect(plain).toContain("SFT model:\n  诉求分类: 6.2%\n  overall: 6.2%");
    expect(plain).toContain(`  Pred: ${"退款申请".repeat(20)}\n  ---`);
    expect(plain).toContain("Base: 续写<|im_end|>\nSFT:  退款申请\n" + "-".repeat(40));
    expect(plain).not.toContain("\x1b[");
    const coloured = renderConsole(report(), { color: true });
    expect(coloured).toContain("\x1b[32m  Pred: 退款申请");
    expect(coloured).toContain("\x1b[31m  Pred: 地址修改\x1b[0m");
    expect(coloured).toContain("\x1b[31mBase: 续写<|im_end|>\x1b[0m");
  });

  test("colour only on a terminal, and not with NO_COLOR set", () => {
    // src/env.ts reads NO_COLOR; the front doors pass it to colorEnabled
    const noColor = (v?: string) => outputSettings(v === undefined ? {} : { NO_COLOR: v }).noColor;
    expect(colorEnabled({ isTTY: true }, noColor())).toBe(true);
    expect(colorEnabled({ isTTY: false }, noColor())).toBe(false); // a pipe or a file
    expect(colorEnabled({}, noColor())).toBe(false);
    expect(colorEnabled({ isTTY: true }, noColor("1"))).toBe(false);
    expect(colorEnabled({ isTTY: true }, noColor(""))).toBe(true);
  });

  // classification reports carry each model's confusion matrix (tests/eval_confusion_test.ts tests the matrix)
  const labels = ["延迟发货", "退款申请"];
  const withConfusion = (): EvalReport => ({
    ...report(),
    confusion: {
      base: confusionMatrix(["延迟发货", "退款申请"], ["退款申请", "退款申请"], labels),
      sft: confusionMatrix(["延迟发货", "退款申请"], ["延迟发货", "延迟发货"], labels),
    },
  });

  test("confusion matrices: in the console after the accuracies, in the Markdown with the heatmap", () => {
    const r = withConfusion();
    const plain = renderConsole(r, { color: false });
    const base = renderConfusionConsole(r.confusion!.base!, { title: "Base model" });
    const sft = renderConfusionConsole(r.confusion!.sft, { title: "SFT model" });
    expect(plain).toContain(`overall: 6.2%\n\n${base}\n\n${sft}\n\nSamples (SFT):`);
    expect(renderConsole(r, { color: true })).toContain("\x1b[32m"); // green correct counts
    const md = renderMarkdown(r, { svgName: "eval.confusion.svg" });
    expect(md).toContain("## Confusion matrix");
    expect(md).toContain("![confusion matrices](eval.confusion.svg)");
    expect(md).toContain(`Base model:\n\n${renderConfusionMarkdown(r.confusion!.base!)}`);
    expect(md).toContain(`SFT model:\n\n${renderConfusionMarkdown(r.confusion!.sft)}`);
    expect(md.indexOf("## Confusion matrix")).toBeLessThan(md.indexOf("## Samples"));
    expect(renderMarkdown(r)).not.toContain("!["); // no heatmap named, none shown
    expect(renderMarkdown(report())).not.toContain("Confusion");
    expect(confusionSvg(r)!.indexOf("Base model")).toBeLessThan(confusionSvg(r)!.indexOf("SFT model"));
    expect(confusionSvg({ ...r, confusion: { sft: r.confusion!.sft } })).not.toContain("Base model");
    expect(confusionSvg(report())).toBeNull();
  });

  test("field scores (JSON extraction): in the console after the accuracies and in the Markdown", () => {
    const exp = ['{"name": "陈洁", "email": "a@b.cn", "order_id": "OD20240105-1234"}'];
    const fields = { base: fieldScores(["续写"], exp), sft: fieldScores(exp, exp) };
    const r = { ...report(), fields };
    const panels = [{ title: "Base", scores: fields.base }, { title: "SFT", scores: fields.sft }];
    expect(renderConsole(r, { color: false })).toContain(`overall: 6.2%\n\n${renderFieldsConsole(panels)}\n`);
    const md = renderMarkdown(r);
    expect(md).toContain(`## Fields\n\nThe share of items with each field right`);
    expect(md).toContain(renderFieldsMarkdown(panels));
    const sftOnly = renderMarkdown({ ...r, base: undefined, fields: { sft: fields.sft } });
    expect(sftOnly).toContain(renderFieldsMarkdown([{ title: "SFT", scores: fields.sft }]));
    expect(renderMarkdown(report())).not.toContain("## Fields");
  });

  test("label scores: highest first, two decimals, the rest counted; shown under the sample's prediction", () => {
    const scores = { 延迟发货: -1.5, 退款申请: -0.012, 地址修改: -2.25, 物流异常: -3 };
    expect(labelScoreLine(scores)).toBe("退款申请 -0.01 · 延迟发货 -1.50 · 地址修改 -2.25 · 1 more");
    expect(labelScoreLine({ a: -1 }, 3)).toBe("a -1.00");
    const r = report();
    r.samples[0]!.labelScores = scores;
    const text = renderConsole(r, { color: false });
    expect(text).toContain(
      `Pred: ${"退款申请".repeat(20)}\n  Label scores (mean log-prob per token): ${labelScoreLine(scores)}\n  ---`,
    );
    // the Markdown samples get a column for them ("–" where a sample has none)
    const md = renderMarkdown(r);
    expect(md).toContain("| # | Question | Expected | Prediction | | Label scores |");
    expect(md).toContain(`| ✓ | ${labelScoreLine(scores)} |`);
    expect(md).toContain("| 2 | Q2 | 延迟发货 | 地址修改 | ✗ | – |");
    expect(renderMarkdown(report())).toContain("| # | Question | Expected | Prediction | |\n");
  });

  test("writeReport writes .md and .json atomically, and the heatmap when there are confusion matrices", async () => {
    const dir = await mkdtemp(join(tmpdir(), "report-"));
    try {
      const paths = await writeReport(report(), join(dir, "out", "eval"));
      expect(paths.svg).toBeUndefined();
      expect(JSON.parse(await readFile(paths.json, "utf8"))).toEqual(JSON.parse(JSON.stringify(report())));
      expect(await readFile(paths.md, "utf8")).toBe(renderMarkdown(report()));
      expect((await readdir(join(dir, "out"))).sort()).toEqual(["eval.json", "eval.md"]); // no temp files left

      const r = withConfusion();
      const p2 = await writeReport(r, join(dir, "c", "eval"));
      expect(p2.svg).toBe(join(dir, "c", "eval.confusion.svg"));
      expect(await readFile(p2.svg!, "utf8")).toBe(confusionSvg(r));
      expect(await readFile(p2.md, "utf8")).toBe(renderMarkdown(r, { svgName: "eval.confusion.svg" }));
      expect(JSON.parse(await readFile(p2.json, "utf8")).confusion.sft.counts).toEqual([[1, 0], [1, 0]]);
      expect((await readdir(join(dir, "c"))).sort()).toEqual(["eval.confusion.svg", "eval.json", "eval.md"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
