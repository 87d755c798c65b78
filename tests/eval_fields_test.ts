/**
 * Per-field scores of the JSON-extraction task: the notebook's parsing and normalisation applied field by
 * field, plain answers, and the console and Markdown renderings.
 */
import { describe, expect, test } from "bun:test";
import { fieldScores, renderFieldsConsole, renderFieldsMarkdown } from "../src/eval/fields.ts";
import { scorePrediction } from "../src/eval/metrics.ts";

const EXP = '{"name": "陈洁", "email": "chen.jie@example.com", "order_id": "OD20240105-1234"}';
const PREDS = [
  EXP, // all right
  '答案：{"name": "陈 洁", "email": "chen.jie@example.com", "orderid": "OD20240105-9999"}', // order id wrong
  "我不知道", // nothing parsed
  '{"name": "王", "email": "chen.jie@example.com"}', // name wrong, order id missing
];

describe("field scores", () => {
  test("each field scored with the notebook's normalisation; parsed counts answers holding an object", () => {
    const s = fieldScores(PREDS, PREDS.map(() => EXP));
    expect(s.parsed).toEqual({ field: "parsed", correct: 3, total: 4, accuracy: 0.75 });
    expect(s.fields.map((f) => [f.field, f.correct, f.total])).toEqual([
      ["name", 2, 4], // "陈 洁" normalises to 陈洁
      ["email", 3, 4],
      ["order_id", 1, 4], // "orderid" normalises to order_id, but its value differs
    ]);
    // an item is right for the notebook exactly when every field is
    const allRight = PREDS.map((p) => scorePrediction(p, { metric: "json", expected: EXP }));
    expect(allRight).toEqual([true, false, false, false]);
  });

  test("plain answers: each field found on its own (the notebook's parser needs all three)", () => {
    const exp = '{"name": "陈洁", "email": "chen.jie@example.com", "order_id": "OD20240105-1234"}';
    const preds = [
      "姓名：陈洁；邮箱：chen.jie@example.com；订单号：OD２０２４０１０５-１２３４",
      "姓名：陈洁；邮箱：无",
      "？",
    ];
    const s = fieldScores(preds, preds.map(() => exp), { plain: true });
    expect(s.parsed.correct).toBe(2);
    expect(s.fields.map((f) => f.correct)).toEqual([2, 1, 1]);
    expect(preds.map((p) => scorePrediction(p, { metric: "json", expected: exp }, { plain: true }))).toEqual([
      true,
      false,
      false,
    ]);
  });

  test("expected answers that are no JSON object are skipped; lengths must match", () => {
    const s = fieldScores([EXP, "x"], [EXP, "退款申请"]);
    expect(s.parsed.total).toBe(1);
    expect(s.fields[0]!.total).toBe(1);
    const none = fieldScores(["x"], ["退款申请"]);
    expect(none.fields).toEqual([]);
    expect(Number.isNaN(none.parsed.accuracy)).toBe(true);
    expect(() => fieldScores([EXP], [])).toThrow("1 predictions but 0 expected answers");
  });

  test("console and Markdown: one column per model, parsed first, a bar for the SFT model", () => {
    const sft = fieldScores(PREDS, PREDS.map(() => EXP));
    const base = fieldScores(PREDS.map(() => "续写"), PREDS.map(() => EXP));
    const panels = [{ title: "Base", scores: base }, { title: "SFT", scores: sft }];
    const lines = renderFieldsConsole(panels).split("\n");
    expect(lines[1]).toBe("  field        Base      SFT");
    expect(lines[2]).toBe("  parsed       0.0%    75.0%  " + "█".repeat(15));
    expect(lines[5]).toBe("  order_id     0.0%    25.0%  " + "█".repeat(5));
    expect(renderFieldsConsole([{ title: "SFT", scores: sft }]).split("\n")[3]).toBe(
      "  name        50.0%  " + "█".repeat(10),
    );
    expect(renderFieldsMarkdown(panels).split("\n")).toEqual([
      "| Field | Base | SFT |",
      "|---|---:|---:|",
      "| answer parsed | 0.0% (0/4) | 75.0% (3/4) |",
      "| name | 0.0% (0/4) | 50.0% (2/4) |",
      "| email | 0.0% (0/4) | 75.0% (3/4) |",
      "| order_id | 0.0% (0/4) | 25.0% (1/4) |",
    ]);
  });
});
