/**
 * The memory estimate training prints (and refuses by): the parameter count of GPT-2's sizes, the parts of
 * the estimate at the real shape against the measured figures, and the refusal with what would fit.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import type { GPT2Config } from "../src/model/config.ts";
import { checkFits, describeEstimate, estimateTrainingMemory, parameterCount } from "../src/train/memory.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { NOTEBOOK_TRAIN_CONFIG } from "../src/train/trainer.ts";
import { runTraining } from "../src/train/run.ts";
import { adapterSize, DEFAULT_LORA, loraSpecOf } from "../src/model/lora.ts";

const gpt2 = (nLayer: number, nEmbd: number, nHead: number, vocabSize = 50257): GPT2Config => ({
  vocabSize,
  nPositions: 1024,
  nEmbd,
  nLayer,
  nHead,
  layerNormEpsilon: 1e-5,
  activationFunction: "gelu_new",
  embdPdrop: 0.1,
  residPdrop: 0.1,
  attnPdrop: 0.1,
  tieWordEmbeddings: true,
  raw: {},
});

describe("memory estimate", () => {
  test("parameter counts of the GPT-2 sizes (as transformers counts them)", () => {
    expect(parameterCount(gpt2(12, 768, 12))).toBe(124_439_808); // openai-community/gpt2
    expect(parameterCount(gpt2(6, 768, 12))).toBe(81_912_576); // distilgpt2
    expect(parameterCount(gpt2(24, 1024, 16))).toBe(354_823_168); // gpt2-medium
    expect(parameterCount(gpt2(36, 1280, 20))).toBe(774_030_080); // gpt2-large
    expect(parameterCount(gpt2(48, 1600, 25))).toBe(1_557_611_200); // gpt2-xl
  });

  test("the real shape: 16 bytes per parameter, and activations near the measured 225 MB per example", () => {
    const real = { ...gpt2(12, 768, 12, 21128 + 63), nPositions: 1024 };
    const e = estimateTrainingMemory(real, 4, 256);
    expect(e.parameters).toBe(102_117_120);
    expect(e.weights + e.gradients + e.adamMoments).toBe(16 * e.parameters);
    const perExample = e.activations / 4 / 1e6;
    expect(perExample).toBeGreaterThan(225 * 0.9);
    expect(perExample).toBeLessThan(225 * 1.2);
    expect(describeEstimate(e, 4, 256)).toBe(
      "Memory estimate: 2.60 GB = weights 408 MB + gradients 408 MB + AdamW moments 817 MB + activations 966 MB " +
        "(batch 4 × 256 tokens; 102.1 M parameters)",
    );
  });

  test("LoRA: gradients and moments of the adapter alone (plus the embedding's gradient with token rows)", () => {
    const real = { ...gpt2(12, 768, 12, 21128 + 63), nPositions: 1024 };
    const spec = loraSpecOf(DEFAULT_LORA, 21128, 21128 + 63);
    const trainable = adapterSize(real, spec);
    // r 8 on c_attn (768→2304), attn.c_proj (768→768), c_fc (768→3072), mlp.c_proj (3072→768) × 12 layers, and
    // the 63 token rows
    expect(trainable).toBe(12 * 8 * ((768 + 2304) + (768 + 768) + (768 + 3072) + (3072 + 768)) + 63 * 768);
    const full = estimateTrainingMemory(real, 4, 256);
    const lora = estimateTrainingMemory(real, 4, 256, { lora: { trainable, tokenRows: true } });
    expect(lora.weights).toBe(full.weights + 4 * trainable);
    expect(lora.gradients).toBe(4 * (trainable + 21191 * 768));
    expect(lora.adamMoments).toBe(8 * trainable);
    expect(lora.activations).toBe(full.activations);
    const noRows = estimateTrainingMemory(real, 4, 256, { lora: { trainable, tokenRows: false } });
    expect(noRows.gradients).toBe(4 * trainable);
  });

  test("a run that cannot fit is refused with what would fit", () => {
    const e = estimateTrainingMemory(gpt2(12, 768, 12), 8, 1024);
    const run = { batchSize: 8, maxLength: 1024, gradAccum: 1 };
    expect(() => checkFits(e, 8e9, "this machine", run)).toThrow(
      /^Cannot train: the run needs about [\d.]+ GB and this machine has 8.00 GB; --batch-size \d --grad-accum \d+ keeps the batch of 8/,
    );
    expect(() => checkFits(e, 1e9, "this machine", run)).toThrow("exceed it: this model does not train here");
    expect(() => checkFits(e, 1e12, "this machine", run)).not.toThrow();
  });

  test("training prints the estimate and refuses before it reads any data", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mem-"));
    try {
      const fixture = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
      const { model, tokenizer } = await loadModelAndTokenizer(fixture, new CpuBackend(), { prepare: true });
      const lines: string[] = [];
      await expect(runTraining({
        model,
        tokenizer,
        modelName: fixture,
        task: "classification",
        dataDir: join(dir, "no-data"),
        mask: "assistant",
        config: { ...NOTEBOOK_TRAIN_CONFIG, maxLength: 64 },
        outDir: join(dir, "out"),
        runDir: join(dir, "run"),
        availableMemory: 1e5,
        print: (l) => lines.push(l),
      })).rejects.toThrow("Cannot train: the run needs about");
      expect(lines.length).toBe(1);
      expect(lines[0]!.startsWith("Memory estimate: ")).toBe(true);
      model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
