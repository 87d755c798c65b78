/**
 * The classification task's confusion matrix: counting, the (other) class, recall, the display width that
 * aligns Chinese labels, and the console / Markdown / SVG renderings.
 */
import { describe, expect, test } from "bun:test";
import {
  confusionMatrix,
  displayWidth,
  OTHER,
  recalls,
  renderConfusionConsole,
  renderConfusionMarkdown,
  renderConfusionSvg,
} from "../src/eval/confusion.ts";
import { ISSUE_LABELS } from "../src/data/synth.ts";

const L = [...ISSUE_LABELS];
// nine items: six right, the base-model pattern of answering L[1] for three others
const expected = [L[0]!, L[1]!, L[2]!, L[3]!, L[4]!, L[5]!, L[0]!, L[2]!, L[3]!];
const predicted = [L[0]!, L[1]!, L[2]!, L[3]!, L[4]!, L[5]!, L[1]!, L[1]!, L[1]!];
// deno-lint-ignore no-control-regex
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

describe("confusion matrix", () => {
  test("counts (expected, predicted) pairs in label order; the diagonal is the number correct", () => {
    const m = confusionMatrix(expected, predicted, L);
    expect(m.classes).toEqual(L);
    expect(m.counts[0]).toEqual([1, 1, 0, 0, 0, 0]);
    expect(m.counts[2]).toEqual([0, 1, 1, 0, 0, 0]);
    expect(m.counts[1]).toEqual([0, 1, 0, 0, 0, 0]);
    expect(m.counts.reduce((a, row, i) => a + row[i]!, 0)).toBe(6);
    expect(recalls(m)).toEqual([0.5, 1, 0.5, 0.5, 1, 1]);
  });

  test("answers that are no label (free text, other test labels) go to an (other) class", () => {
    const m = confusionMatrix([L[0]!, "别的", L[1]!], [` ${L[0]!}\n`, L[0]!, "我不知道"], L);
    expect(m.classes).toEqual([...L, OTHER]);
    expect(m.counts[0]![0]).toBe(1); // whitespace around a label still counts as the label
    expect(m.counts[6]![0]).toBe(1);
    expect(m.counts[1]![6]).toBe(1);
    expect(Number.isNaN(recalls(m)[2]!)).toBe(true); // no item expects L[2]
  });

  test("mismatched lengths are an error", () => {
    expect(() => confusionMatrix([L[0]!], [], L)).toThrow("1 expected answers but 0 predictions");
  });

  test("display width: CJK ideographs and fullwidth forms take two columns", () => {
    expect(displayWidth("abc")).toBe(3);
    expect(displayWidth("退款申请")).toBe(8);
    expect(displayWidth("（A）")).toBe(5);
    expect(displayWidth("")).toBe(0);
  });

  test("console: every row as wide as the header, colours only when asked, zeros as ·", () => {
    const m = confusionMatrix(expected, predicted, L);
    const plain = renderConfusionConsole(m, { title: "SFT model" });
    expect(plain).not.toContain("\x1b[");
    const lines = plain.split("\n");
    expect(lines[0]).toBe("SFT model (rows: expected label, columns: predicted label)");
    expect(lines).toHaveLength(2 + L.length);
    const widths = lines.slice(1).map(displayWidth);
    expect(new Set(widths).size).toBe(1);
    expect(lines[1]!.trim().endsWith("recall")).toBe(true);
    expect(lines[2]).toContain("·");
    expect(lines[2]!.trim().endsWith("50.0%")).toBe(true);
    const colored = renderConfusionConsole(m, { color: true });
    expect(colored).toContain("\x1b[32m"); // a correct count
    expect(colored).toContain("\x1b[31m"); // a confusion
    expect(stripAnsi(colored).split("\n").slice(1)).toEqual(
      renderConfusionConsole(m).split("\n").slice(1),
    );
  });

  test("Markdown: diagonal bold, a recall column, pipes escaped", () => {
    const m = confusionMatrix(["a|b", "c"], ["a|b", "a|b"], ["a|b", "c"]);
    const md = renderConfusionMarkdown(m).split("\n");
    expect(md[0]).toBe("| expected \\ predicted | a\\|b | c | recall |");
    expect(md[1]).toBe("|---|---:|---:|---:|");
    expect(md[2]).toBe("| a\\|b | **1** | · | 100.0% |");
    expect(md[3]).toBe("| c | 1 | **0** | 0.0% |");
  });

  test("SVG: one panel per matrix with its accuracy, every label and count, text escaped", () => {
    const base = confusionMatrix(expected, predicted.map(() => L[1]!), L);
    const sft = confusionMatrix(expected, predicted, L);
    const svg = renderConfusionSvg([{ title: "Base <model>", matrix: base }, { title: "SFT model", matrix: sft }]);
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("Base &lt;model&gt; — 11.1% correct (1/9)");
    expect(svg).toContain("SFT model — 66.7% correct (6/9)");
    for (const l of L) expect(svg.split(`>${l}</text>`).length - 1).toBe(4); // row and column, two panels
    // non-zero cells: the base model's column L[1] (1 on the diagonal, 5 off it); SFT 6 on the diagonal, 3 off
    expect(svg.match(/fill="#2e7d32"/g)!.length).toBe(1 + 6);
    expect(svg.match(/fill="#c62828"/g)!.length).toBe(5 + 3);
    expect(() => renderConfusionSvg([])).toThrow("no matrices");
  });
});
