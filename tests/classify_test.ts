import { describe, expect, test } from "bun:test";
import { CpuBackend } from "../src/backend/cpu.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import {
  classify,
  classifyBatch,
  commonPrefixLength,
  scoreLabels,
  scoreLabelsBatch,
  scoreLabelsNotebook,
} from "../src/eval/classify.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { webgpuForTests } from "../src/testing/backends.ts";
import { assertClose } from "../src/testing/compare.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;

const be = new CpuBackend();
const loaded = await loadModelDir(FIXTURE);
const model = GPT2.fromTensors(be, loaded.config, loaded.tensors);
// prompts of three lengths (two share one), labels of 1, 2 and 4 tokens
const prompts = [[2, 281, 300, 301, 120, 130], [2, 281, 305, 140], [2, 281, 300, 302, 121, 131], [7]];
const labels = [[150], [151, 152], [160, 161, 162, 163]];
// prompts that share their first 5 tokens (as the chat template and the instruction do), of three lengths;
// the shortest is the shared prefix plus one token
const shared = [2, 281, 300, 301, 120];
const withPrefix = [[...shared, 130], [...shared, 131, 140, 141], [...shared, 132, 142, 143], [...shared, 133, 9]];
const available = await webgpuForTests("classify_test");

describe("label classifier", () => {
  test("one prompt: the shared-prompt scores equal one full forward per label", async () => {
    // float32 through differently ordered computations (cache vs full sequence): 1e-5 absolute on log-probs ≈ −6
    for (const p of prompts) {
      assertClose(await scoreLabels(model, p, labels), await scoreLabelsNotebook(model, p, labels), { atol: 1e-5 });
    }
  });

  test("batched over prompts (grouped by length, split into small batches) equals one at a time", async () => {
    const expected = await Promise.all(prompts.map((p) => scoreLabels(model, p, labels)));
    for (const maxRows of [3, 6, 192]) {
      const got = await scoreLabelsBatch(model, prompts, labels, { maxRows });
      for (const [i, e] of expected.entries()) {
        assertClose(got[i]!, e, { atol: 1e-5 }, `prompt ${i}, maxRows ${maxRows}`);
      }
    }
  });

  test("the prefix every prompt shares runs once: same scores as the notebook's forward per label", async () => {
    expect(commonPrefixLength(withPrefix)).toBe(5);
    expect(commonPrefixLength([[1, 2, 3], [1, 2, 3]])).toBe(2); // each keeps a token to predict from
    expect(commonPrefixLength([[1, 2], [3, 2]])).toBe(0);
    expect(commonPrefixLength([[4]])).toBe(0);
    const expected = await Promise.all(withPrefix.map((p) => scoreLabelsNotebook(model, p, labels)));
    for (const opts of [{}, { maxRows: 6 }, { sharePrefix: false }]) {
      const got = await scoreLabelsBatch(model, withPrefix, labels, opts);
      for (const [i, e] of expected.entries()) {
        assertClose(got[i]!, e, { atol: 1e-5 }, `prompt ${i}, ${JSON.stringify(opts)}`);
      }
    }
  });

  test.skipIf(!available)("on WebGPU: the batched, prefix-sharing scores equal the CPU's notebook scores", async () => {
    const gpu = await WebGpuBackend.create();
    const m = GPT2.fromTensors(gpu, loaded.config, loaded.tensors);
    try {
      const all = [...withPrefix, ...prompts];
      const expected = await Promise.all(all.map((p) => scoreLabelsNotebook(model, p, labels)));
      for (const group of [withPrefix, all]) {
        const got = await scoreLabelsBatch(m, group, labels, { maxRows: 9 });
        for (const [i, g] of got.entries()) assertClose(g, expected[i]!, { atol: 1e-4 }, `prompt ${i}`);
      }
    } finally {
      m.dispose();
      gpu.dispose();
    }
  }, 120_000);

  test("classify picks the best label, first on ties; a label with no tokens scores -Infinity", async () => {
    const named = labels.map((ids, i) => ({ label: `L${i}`, ids }));
    const one = await classify(model, prompts[0]!, named);
    const s = one.scores;
    expect(one.label).toBe(`L${s.indexOf(Math.max(...s))}`);
    const many = await classifyBatch(model, prompts, named);
    expect(many[0]!.label).toBe(one.label);
    const withEmpty = await scoreLabels(model, prompts[1]!, [[150], []]);
    expect(withEmpty[1]).toBe(-Infinity);
  });

  test("bad input is a clear error", async () => {
    await expect(scoreLabels(model, [], labels)).rejects.toThrow("prompt 0 has no tokens");
    await expect(scoreLabels(model, new Array(255).fill(5), labels)).rejects.toThrow("exceed n_positions 256");
    await expect(classify(model, prompts[0]!, [])).rejects.toThrow("no labels");
  });
});
