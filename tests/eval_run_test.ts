// The evaluation front door (src/eval/run.ts) on the tiny fixture model: the report's structure, the
// classifier's choice against scoreLabels computed directly, the generation path, the report files, and
// the errors raised before any work. Label choices are compared exactly (same code path, same floats);
// accuracies only need to lie in [0, 1] (the tiny model is untrained on this data).
import { describe, expect, test } from "bun:test";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../src/backend/cpu.ts";
import { promptFor } from "../src/data/chatml.ts";
import { toJsonl } from "../src/data/jsonl.ts";
import { generateClassificationRecords, generateExtractionRecords, ISSUE_LABELS } from "../src/data/synth.ts";
import { scoreLabels } from "../src/eval/classify.ts";
import type { EvalReport } from "../src/eval/report.ts";
import { cleanResponse, generator, planEvaluation, runEvaluation, summaryJson } from "../src/eval/run.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";

const FIX = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");
const quiet = { progress: "none" as const, print: () => {}, warn: () => {} };

interface Setup {
  root: string;
  sftDir: string;
  dataDir: string;
}

let setupPromise: Promise<Setup> | undefined;

/** A temp dir with the SFT model (fixture + sft_task.json) and the test files; made once, on first use. */
function setup(): Promise<Setup> {
  setupPromise ??= (async () => {
    const root = await mkdtemp(join(tmpdir(), "eval-run-"));
    const sftDir = join(root, "sft");
    await cp(join(FIX, "model"), sftDir, { recursive: true });
    const meta = { task: "classification", labels: [...ISSUE_LABELS], model_name: join(FIX, "model-bin") };
    await writeFile(join(sftDir, "sft_task.json"), JSON.stringify(meta, null, 2));
    await writeFile(join(root, "gpt2_sft_test.jsonl"), toJsonl(generateClassificationRecords(20, 44)));
    await writeFile(join(root, "custom_sft_test.jsonl"), toJsonl(generateExtractionRecords(6, 44)));
    await writeFile(join(root, "empty.jsonl"), "\n\n");
    return { root, sftDir, dataDir: join(root, "data") };
  })();
  return setupPromise;
}

function checkSummary(s: EvalReport["sft"], total: number) {
  expect(s.overall.total).toBe(total);
  expect(s.overall.accuracy).toBeGreaterThanOrEqual(0);
  expect(s.overall.accuracy).toBeLessThanOrEqual(1);
  for (const c of s.categories) {
    expect(c.accuracy).toBeGreaterThanOrEqual(0);
    expect(c.accuracy).toBeLessThanOrEqual(1);
    expect(c.accuracy).toBe(c.correct / c.total);
  }
}

describe("runEvaluation", () => {
  test("classification: base and SFT, report structure, classifier = argmax of scoreLabels, files", async () => {
    const { root, sftDir } = await setup();
    const be = new CpuBackend();
    const reportBase = join(root, "out", "report");
    const lines: string[] = [];
    const result = await runEvaluation({
      ...quiet,
      progress: "lines",
      progressEvery: 5,
      print: (l) => lines.push(l),
      sftDir,
      testFile: join(root, "gpt2_sft_test.jsonl"),
      maxSamples: 10,
      backend: be,
      reportBase,
    });
    const r = result.report;
    expect(r.task).toBe("classification");
    expect(r.model).toBe(join(FIX, "model-bin"));
    expect(r.settings.classifier).toBe(true);
    expect(r.settings.labels).toEqual([...ISSUE_LABELS]);
    expect(r.settings.maxSamples).toBe(10);
    expect(r.settings.backend).toBe("cpu");
    checkSummary(r.sft, 10);
    checkSummary(r.base!, 10);
    expect(r.samples).toHaveLength(3);
    expect(r.comparison).toHaveLength(5);
    // each sample carries the labels' scores; the prediction is the highest (the first on ties)
    for (const sample of r.samples) {
      const entries = Object.entries(sample.labelScores!);
      expect(entries.map(([l]) => l)).toEqual([...ISSUE_LABELS]);
      const top = entries.reduce((a, b) => b[1] > a[1] ? b : a);
      expect(sample.pred).toBe(top[0]);
    }
    for (const row of [...r.samples.map((s) => s.pred), ...r.comparison.flatMap((c) => [c.sft, c.base!])]) {
      expect(ISSUE_LABELS).toContain(row);
    }
    expect(lines).toContain("  evaluated 5/10");
    expect(lines).toContain("  evaluated 10/10");

    // the SFT prediction of item 1 is the argmax of the label scores computed directly
    const { model, tokenizer } = await loadModelAndTokenizer(sftDir, be, { prepare: false, warn: () => {} });
    const rec = generateClassificationRecords(1, 44)[0]!;
    const promptIds = tokenizer.encode(promptFor(rec.instruction), { addSpecialTokens: false }).ids;
    const labelIds = ISSUE_LABELS.map((l) => tokenizer.encode(l, { addSpecialTokens: false }).ids);
    const scores = await scoreLabels(model, promptIds, labelIds);
    let best = 0;
    for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
    expect(r.samples[0]!.pred).toBe(ISSUE_LABELS[best]!);
    // the batched pass scores as the item alone, up to float32 rounding of the wider products
    Object.values(r.samples[0]!.labelScores!).forEach((v, k) => expect(v).toBeCloseTo(scores[k]!, 6));
    expect(r.samples[0]!.correct).toBe(ISSUE_LABELS[best] === rec.expected);
    model.dispose();

    // reports written
    expect(result.paths).toEqual({
      md: `${reportBase}.md`,
      json: `${reportBase}.json`,
      svg: `${reportBase}.confusion.svg`,
    });
    const json = JSON.parse(await readFile(`${reportBase}.json`, "utf8")) as EvalReport;
    expect(json.sft.overall.total).toBe(10);
    const mdText = await readFile(`${reportBase}.md`, "utf8");
    expect(mdText).toContain("# Evaluation: classification");
    expect(mdText).toContain("![confusion matrices](report.confusion.svg)");
    expect(await readFile(`${reportBase}.confusion.svg`, "utf8")).toContain("Base model");

    // the confusion matrices count exactly the predictions: the diagonal is the number correct
    for (const [m, summary] of [[r.confusion!.sft, r.sft], [r.confusion!.base!, r.base!]] as const) {
      expect(m.classes).toEqual([...ISSUE_LABELS]); // the classifier only ever answers a label
      expect(m.counts.flat().reduce((a, b) => a + b, 0)).toBe(10);
      expect(m.counts.reduce((a, row, i) => a + row[i]!, 0)).toBe(summary.overall.correct);
    }
    expect(json.confusion!.sft.counts).toEqual(r.confusion!.sft.counts);
    const line = summaryJson(result);
    expect(Object.keys(line)).toEqual(["task", "sft", "base", "seconds", "report"]);
    expect((line.sft as { overall: number }).overall).toBe(r.sft.overall.accuracy);
  });

  test("generation path (json_extraction, 8 new tokens): generate_text and generate_response, scoring runs", async () => {
    const { root, sftDir } = await setup();
    const be = new CpuBackend();
    const result = await runEvaluation({
      ...quiet,
      sftDir,
      task: "json_extraction",
      testFile: join(root, "custom_sft_test.jsonl"),
      maxSamples: 3,
      decoding: { maxNewTokens: 8 },
      backend: be,
    });
    const r = result.report;
    expect(r.task).toBe("json_extraction");
    checkSummary(r.base!, 3);
    expect(r.settings.classifier).toBe(false);
    expect(r.settings.maxNewTokens).toBe(8);
    checkSummary(r.sft, 3);
    expect(r.sft.categories.map((c) => c.category)).toEqual(["信息抽取"]);
    expect(r.samples).toHaveLength(3);
    // 3 evaluated + 2 more for the comparison of the first five
    expect(r.comparison).toHaveLength(5);
    expect(typeof r.comparison[3]!.base).toBe("string");
    expect(r.comparison[3]!.baseCorrect).toBe(false);
    expect(r.confusion).toBeUndefined(); // no labels to confuse
    expect(r.samples.every((x) => x.labelScores === undefined)).toBe(true);
    // per-field scores of the 3 evaluated items; the accuracy above needs every field right
    expect(r.fields!.sft.fields.map((f) => f.field)).toEqual(["name", "email", "order_id"]);
    for (const s of [r.fields!.sft, r.fields!.base!]) {
      expect(s.parsed.total).toBe(3);
      for (const f of s.fields) expect(f.total).toBe(3);
    }
    for (const s of r.samples) {
      expect(typeof s.pred).toBe("string");
      expect(s.pred).not.toContain("[CLS]");
      expect(s.pred).not.toContain("<|im_end|>");
      expect(s.correct).toBe(false); // 8 tokens cannot hold the JSON answer
    }
    expect(result.paths).toBeUndefined();
  });

  test("batched generation (gen batch 2, sampling) answers what one-at-a-time generation answers", async () => {
    const { root, sftDir } = await setup();
    const be = new CpuBackend();
    const run = (batchSize: number) =>
      runEvaluation({
        ...quiet,
        sftDir,
        task: "json_extraction",
        testFile: join(root, "custom_sft_test.jsonl"),
        maxSamples: 3,
        decoding: { maxNewTokens: 12, doSample: true, seed: 5, batchSize },
        backend: be,
      });
    const [one, batched] = [(await run(1)).report, (await run(2)).report];
    const preds = (r: typeof one) => r.comparison.map((c) => [c.base, c.sft]);
    expect(preds(batched)).toEqual(preds(one));
    expect(new Set(preds(one).flat()).size).toBeGreaterThan(3); // the answers differ item to item
    await expect(planEvaluation({ sftDir, testFile: join(root, "custom_sft_test.jsonl"), decoding: { batchSize: 0 } }))
      .rejects.toThrow("Invalid generation batch size: 0");
  });

  test("the generator's prefetch answers items first, first + 1, … with their own seeds", async () => {
    const { sftDir } = await setup();
    const be = new CpuBackend();
    const { model, tokenizer } = await loadModelAndTokenizer(sftDir, be, { prepare: false, warn: () => {} });
    const decoding = {
      maxNewTokens: 6,
      doSample: true,
      temperature: 0.9,
      topP: 0.95,
      seed: 3,
      repetitionPenalty: 1.1,
      noRepeatNgramSize: 3,
    };
    const items = generateExtractionRecords(3, 44).map((r) => r.instruction);
    const batched = generator(model, tokenizer, { chatml: true, decoding: { ...decoding, batchSize: 2 } });
    const alone = generator(model, tokenizer, { chatml: true, decoding: { ...decoding, batchSize: 1 } });
    expect(alone.prefetch).toBeUndefined();
    await batched.prefetch!(items, 5); // items 5, 6, 7 of a test set
    for (const [k, x] of items.entries()) expect(await batched(x, 5 + k)).toBe(await alone(x, 5 + k));
    // item 5 with seed 3 + 5, not 3 + 0: the answers differ from those of items 0, 1, 2
    const shifted = [];
    for (const [k, x] of items.entries()) shifted.push(await alone(x, k));
    expect(shifted).not.toEqual(await Promise.all(items.map((x, k) => batched(x, 5 + k))));
    model.dispose();
  });

  test("runBase false (--no-base): no base summary, no base column", async () => {
    const { root, sftDir } = await setup();
    const { report } = await runEvaluation({
      ...quiet,
      sftDir,
      testFile: join(root, "gpt2_sft_test.jsonl"),
      maxSamples: 2,
      runBase: false,
      backend: new CpuBackend(),
    });
    expect(report.base).toBeUndefined();
    expect(report.confusion!.base).toBeUndefined();
    expect(report.confusion!.sft.counts.flat().reduce((a, b) => a + b, 0)).toBe(2);
    checkSummary(report.sft, 2);
    expect(report.samples).toHaveLength(2);
    expect(report.comparison).toHaveLength(5);
    expect(report.comparison.every((c) => c.base === undefined)).toBe(true);
  });

  test("cleanResponse follows generate_response", () => {
    expect(cleanResponse("[CLS] 延 迟 发 货 <|im_end|> 多 余")).toBe("延 迟 发 货");
    expect(cleanResponse(" x [SEP]")).toBe("x");
  });
});

describe("bad input is refused before any work", () => {
  test("missing SFT dir points at deno task train", async () => {
    const { root } = await setup();
    await expect(planEvaluation({ sftDir: join(root, "nope") })).rejects.toThrow(/deno task train/);
  });
  test("empty data file", async () => {
    const { root, sftDir } = await setup();
    await expect(planEvaluation({ sftDir, testFile: join(root, "empty.jsonl") })).rejects.toThrow(/no records/);
  });
  test("missing test file", async () => {
    const { root, sftDir } = await setup();
    await expect(planEvaluation({ sftDir, testFile: join(root, "missing.jsonl") })).rejects.toThrow(/does not exist/);
  });
  test("unknown task", async () => {
    const { sftDir, dataDir } = await setup();
    await expect(planEvaluation({ sftDir, task: "translation", dataDir })).rejects.toThrow(
      /Unknown task: "translation"/,
    );
  });
  test("malformed sft_task.json", async () => {
    const { root, sftDir } = await setup();
    const dir = join(root, "bad-meta");
    await cp(sftDir, dir, { recursive: true });
    await writeFile(join(dir, "sft_task.json"), "{not json");
    await expect(planEvaluation({ sftDir: dir })).rejects.toThrow(/sft_task\.json: invalid JSON/);
  });
  test("bad max samples", async () => {
    const { root, sftDir } = await setup();
    await expect(planEvaluation({ sftDir, testFile: join(root, "gpt2_sft_test.jsonl"), maxSamples: -1 })).rejects
      .toThrow(/Invalid max samples/);
  });
  test("clean up the temp dir", async () => {
    const { root } = await setup();
    await rm(root, { recursive: true, force: true });
  });
});
