/**
 * Gradient checkpointing (`--gradient-checkpointing`): each block recomputed in the backward pass gives the
 * same loss and the same gradient of every parameter as the taped blocks, with dropout on (the masks are
 * drawn again from the same seeds), on the CPU and on WebGPU.
 */
import { describe, expect, test } from "bun:test";
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { webgpuForTests } from "../src/testing/backends.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { type Batch, GPT2 } from "../src/model/gpt2.ts";
import { estimateTrainingMemory } from "../src/train/memory.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
const available = await webgpuForTests("checkpointing_test");

async function gradients(
  be: Backend,
  checkpointing: boolean,
): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  const loaded = await loadModelDir(FIXTURE);
  const config = { ...loaded.config, embdPdrop: 0.1, residPdrop: 0.1, attnPdrop: 0.1 };
  const model = GPT2.fromTensors(be, config, loaded.tensors);
  try {
    const B = 2, T = 24, V = config.vocabSize;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % V);
    const labels = Int32Array.from(ids, (id, i) => (i % T < 8 ? -100 : id));
    const mask = Int32Array.from({ length: B * T }, (_, i) => (i >= B * T - 3 ? 0 : 1));
    const batch: Batch = { B, T, inputIds: ids, attentionMask: mask, labels };
    model.zeroGrad();
    const { loss } = model.loss(batch, { backward: true, dropoutSeed: 1234, checkpointing });
    const value = ((await be.read(loss)) as Float32Array)[0]!;
    be.free(loss);
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of model.params) grads.set(name, (await be.read(p.grad!)) as Float32Array);
    return { loss: value, grads };
  } finally {
    model.dispose();
  }
}

async function check(be: Backend): Promise<void> {
  const plain = await gradients(be, false);
  const ckpt = await gradients(be, true);
  expect(ckpt.loss).toBe(plain.loss);
  expect(plain.grads.size).toBeGreaterThan(10);
  let worst = 0, scale = 0;
  for (const [name, g] of plain.grads) {
    const h = ckpt.grads.get(name)!;
    for (let i = 0; i < g.length; i++) {
      worst = Math.max(worst, Math.abs(g[i]! - h[i]!));
      scale = Math.max(scale, Math.abs(g[i]!));
    }
  }
  // the same ops on the same inputs in the same order: equal up to float32 rounding of summation orders
  expect(scale).toBeGreaterThan(1e-3);
  expect(worst).toBeLessThanOrEqual(1e-6 * scale);
}

/** A CPU backend that counts the layernorm forwards it runs (two per block, and ln_f). */
class Counting extends CpuBackend {
  layernorms = 0;
  override layernormForward(args: Parameters<CpuBackend["layernormForward"]>[0]): void {
    this.layernorms++;
    super.layernormForward(args);
  }
}

describe("gradient checkpointing", () => {
  test("each block runs again in the backward pass", async () => {
    const { config } = await loadModelDir(FIXTURE);
    const L = config.nLayer;
    for (const [checkpointing, forwards] of [[false, 2 * L + 1], [true, 4 * L + 1]] as const) {
      const be = new Counting();
      await gradients(be, checkpointing);
      expect({ checkpointing, layernorms: be.layernorms }).toEqual({ checkpointing, layernorms: forwards });
    }
  });

  test("the same loss and gradients as the taped blocks (cpu)", () => check(new CpuBackend()), 120_000);
  test.skipIf(!available)("the same loss and gradients as the taped blocks (webgpu)", async () => {
    const be = await WebGpuBackend.create();
    try {
      await check(be);
    } finally {
      be.dispose();
    }
  }, 120_000);

  test("the memory estimate keeps one block's activations instead of every block's", async () => {
    const { config } = await loadModelDir(FIXTURE);
    const deep = { ...config, nLayer: 24, nEmbd: 1024, nHead: 16, vocabSize: 50260 };
    const full = estimateTrainingMemory(deep, 4, 256);
    const ckpt = estimateTrainingMemory(deep, 4, 256, { gradientCheckpointing: true });
    expect(ckpt.weights + ckpt.gradients + ckpt.adamMoments).toBe(full.weights + full.gradients + full.adamMoments);
    expect(ckpt.activations).toBeLessThan(full.activations / 4);
  });
});
