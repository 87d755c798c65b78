/**
 * LoRA against Python's peft: the tiny fixture with peft's adapter (tests/fixtures/tiny-gpt2-zh/lora, made by
 * make_lora_fixture.py in float64): logits, loss, the gradients of every adapter tensor, the clipped AdamW step
 * and the merged model, on the CPU (reference and fast) and on WebGPU. Also the adapter's frozen base (no
 * gradient anywhere else), peft's adapter_config.json, and LoRA dropout.
 */

import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { ADAPTER_WEIGHTS, readAdapterTensors } from "../src/io/adapter_dir.ts";
import { readSafetensors, writeSafetensors, type WriteTensor } from "../src/io/safetensors.ts";
import { type Batch, GPT2, type HostTensor } from "../src/model/gpt2.ts";
import {
  adapterConfigJson,
  adapterShapes,
  initAdapter,
  type LoraSpec,
  mergeAdapter,
  parseAdapterConfig,
  savedTensorName,
  TOKEN_DELTA_NAME,
} from "../src/model/lora.ts";
import { uniformRng } from "../src/model/rng.ts";
import { AdamW } from "../src/train/adamw.ts";
import { compareArrays } from "../src/testing/compare.ts";
import { webgpuForTests } from "../src/testing/backends.ts";

const ROOT = "tests/fixtures/tiny-gpt2-zh";
const DIR = join(ROOT, "lora");
const meta = JSON.parse(await readFile(join(DIR, "reference.json"), "utf8")) as {
  loss: number;
  grad_norm: number;
  trainable: string[];
  adamw: { lr: number; weight_decay: number; clip_grad_norm: number };
};
const ref = readSafetensors(await readFile(join(DIR, "reference.safetensors")), "reference.safetensors");
const inputs = readSafetensors(await readFile(join(ROOT, "reference.safetensors")), "reference.safetensors");
const base = await loadModelDir(join(ROOT, "model"));
const adapterFile = join(DIR, "adapter", "adapter_model.safetensors");
const adapter = new Map<string, HostTensor>(
  [...readSafetensors(await readFile(adapterFile), adapterFile)].map((
    [k, t],
  ) => [k, { shape: t.shape, data: t.data as Float32Array }]),
);
const configFile = join(DIR, "adapter", "adapter_config.json");
const { spec } = parseAdapterConfig(JSON.parse(await readFile(configFile, "utf8")), configFile);

const ids = inputs.get("input_ids")!.data as Int32Array;
const am = inputs.get("attention_mask")!.data as Int32Array;
const [B, T] = inputs.get("input_ids")!.shape as [number, number];
const batch: Batch = { B, T, inputIds: ids, attentionMask: am, labels: inputs.get("labels")!.data as Int32Array };
const V = base.config.vocabSize;
/** Only positions with attention_mask 1 are compared (padding's logits are not defined the same way). */
const realRow = (i: number) => am[Math.floor(i / V)] === 1;

function ref32(name: string): Float32Array {
  const t = ref.get(name);
  if (!t) throw new Error(`reference.safetensors has no ${name}`);
  return t.data as Float32Array;
}

function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  what: string,
  where?: (i: number) => boolean,
) {
  const r = compareArrays(actual, expected, { atol, rtol: atol, where });
  if (!r.ok) throw new Error(`${what}: max abs err ${r.maxAbsErr}, mismatches ${JSON.stringify(r.firstMismatches)}`);
  expect(r.ok).toBe(true);
}

async function adapted(be: Backend): Promise<GPT2> {
  const model = GPT2.fromTensors(be, base.config, base.tensors);
  await model.attachLora(spec, adapter);
  return model;
}

async function logitsOf(model: GPT2): Promise<Float32Array> {
  const be = model.be;
  const idBuf = be.upload(ids), maskBuf = be.upload(am);
  const out = model.forward({ ids: idBuf, mask: maskBuf, B, T });
  const data = await out.read();
  for (const b of [idBuf, maskBuf, out.buf]) be.free(b);
  return data;
}

/** The parity checks on one backend (tolerances as the fixtures README's f32 ones). */
async function parity(be: Backend): Promise<void> {
  const model = await adapted(be);
  try {
    expectClose(await logitsOf(model), ref32("logits"), 2e-4, "logits", realRow);
    model.zeroGrad();
    const { loss } = model.loss(batch, { backward: true });
    const l = (await be.read(loss))[0]!;
    be.free(loss);
    expect(Math.abs(l - meta.loss) / meta.loss).toBeLessThan(1e-5);
    for (const name of meta.trainable) {
      const t = model.trainable.get(savedTensorName(name));
      if (!t) throw new Error(`the model has no trainable ${savedTensorName(name)}`);
      expectClose(await be.read(t.grad!), ref32(`grad.${name}`), 1e-3, `grad ${name}`);
    }
    const opt = new AdamW(be, model.trainable, {
      lr: meta.adamw.lr,
      weightDecay: meta.adamw.weight_decay,
      maxGradNorm: meta.adamw.clip_grad_norm,
    }, model);
    opt.step(meta.adamw.lr);
    const norm = (await be.read(opt.gradNorm))[0]!;
    expect(Math.abs(norm - meta.grad_norm) / meta.grad_norm).toBeLessThan(1e-4);
    for (const name of meta.trainable) {
      expectClose(
        await model.trainable.get(savedTensorName(name))!.read(),
        ref32(`step1.${name}`),
        2e-5,
        `step1 ${name}`,
      );
    }
    expectClose(await logitsOf(model), ref32("step1_logits"), 2e-4, "logits after the step", realRow);
    opt.dispose();
  } finally {
    model.dispose();
  }
}

describe("LoRA vs peft (tiny fixture, float64 reference)", () => {
  test("adapter_config.json: peft's fields read into the spec", () => {
    expect(spec).toEqual({
      r: 4,
      alpha: 8,
      dropout: 0,
      targets: ["c_attn", "c_proj", "c_fc"],
      rslora: false,
      tokenIds: [280, 281, 282],
    });
    // our adapter_config.json reads back as the same spec
    expect(parseAdapterConfig(adapterConfigJson(spec, "x"), "ours").spec).toEqual(spec);
    // every tensor of peft's file has the name and shape we expect, and no other
    const shapes = adapterShapes(base.config, spec);
    expect([...adapter.keys()].sort()).toEqual([...shapes.keys()].sort());
    for (const [k, t] of adapter) expect(t.shape).toEqual(shapes.get(k)!);
  });

  test("CPU reference: logits, loss, adapter gradients, grad norm and the AdamW step", async () => {
    await parity(new CpuBackend({ matmul: "reference" }));
  });

  test("CPU (fast): the same", async () => {
    await parity(new CpuBackend());
  });

  test("merge: merged weights and logits equal peft's merge_and_unload()", async () => {
    const merged = mergeAdapter(base.config, spec, base.tensors, adapter);
    expectClose(
      merged.get("transformer.h.0.attn.c_attn.weight")!.data,
      ref32("merged.transformer.h.0.attn.c_attn.weight"),
      1e-6,
      "merged c_attn",
    );
    expectClose(merged.get("transformer.wte.weight")!.data, ref32("merged.transformer.wte.weight"), 0, "merged wte");
    // the base tensors are untouched
    expect(base.tensors.get("transformer.h.0.attn.c_attn.weight")!.data).not.toEqual(
      merged.get("transformer.h.0.attn.c_attn.weight")!.data,
    );
    const model = GPT2.fromTensors(new CpuBackend(), base.config, merged);
    expectClose(await logitsOf(model), ref32("merged_logits"), 2e-4, "merged logits", realRow);
    model.dispose();
  });

  test("the base is frozen: no gradient on any base parameter but the embedding's token rows", async () => {
    const model = await adapted(new CpuBackend());
    model.zeroGrad();
    model.be.free(model.loss(batch, { backward: true }).loss);
    for (const [name, t] of model.params) {
      if (name === "transformer.wte.weight") expect(t.grad).toBeDefined();
      else expect({ name, grad: t.grad }).toEqual({ name, grad: undefined });
    }
    expect(model.trainable.size).toBe(17);
    // without trainable tokens the embedding holds no gradient either
    const plain = GPT2.fromTensors(new CpuBackend(), base.config, base.tensors);
    const noTokens: LoraSpec = { ...spec, tokenIds: [] };
    const values = new Map(adapter);
    values.delete(TOKEN_DELTA_NAME);
    await plain.attachLora(noTokens, values);
    plain.zeroGrad();
    plain.be.free(plain.loss(batch, { backward: true }).loss);
    for (const t of plain.params.values()) expect(t.grad).toBeUndefined();
    model.dispose();
    plain.dispose();
  });

  test("a new adapter starts as the base model (B = 0) and the token rows are the embedding's", async () => {
    const be = new CpuBackend();
    const plain = GPT2.fromTensors(be, base.config, base.tensors);
    const want = await logitsOf(plain);
    await plain.attachLora(spec, undefined, 7);
    expectClose(await logitsOf(plain), want, 0, "untrained adapter");
    const init = initAdapter(base.config, spec, base.tensors.get("transformer.wte.weight")!.data, uniformRng(7));
    const a = init.get("base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight")!.data;
    const bound = 1 / Math.sqrt(256);
    expect(a.every((x) => Math.abs(x) <= bound)).toBe(true);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    plain.dispose();
  });

  test("LoRA dropout: training mode differs from eval mode and is the same for the same seed", async () => {
    const be = new CpuBackend();
    const losses: number[] = [];
    for (const [p, seed] of [[0.5, 1], [0.5, 1], [0.5, 2], [0, 1]] as const) {
      const model = GPT2.fromTensors(be, { ...base.config, residPdrop: 0, attnPdrop: 0, embdPdrop: 0 }, base.tensors);
      await model.attachLora({ ...spec, dropout: p }, adapter);
      model.zeroGrad();
      const { loss } = model.loss(batch, { backward: true, dropoutSeed: seed });
      losses.push((await be.read(loss))[0]!);
      model.dispose();
    }
    expect(losses[0]).toBe(losses[1]!);
    expect(losses[0]).not.toBe(losses[2]!);
    expect(Math.abs(losses[3]! - meta.loss) / meta.loss).toBeLessThan(1e-5);
  });

  test("gradient checkpointing: the same loss and adapter gradients", async () => {
    const be = new CpuBackend();
    const grads: Float32Array[][] = [];
    for (const checkpointing of [false, true]) {
      const model = await adapted(be);
      model.zeroGrad();
      be.free(model.loss(batch, { backward: true, checkpointing }).loss);
      grads.push(
        await Promise.all([...model.trainable.values()].map((t) => be.read(t.grad!) as Promise<Float32Array>)),
      );
      model.dispose();
    }
    grads[0]!.forEach((g, i) => expectClose(grads[1]![i]!, g, 1e-6, `checkpointed grad ${i}`));
  });

  test("bad adapter configs and tensors: clear errors", async () => {
    const good = adapterConfigJson(spec, "x");
    const bad = (patch: Record<string, unknown>) => () =>
      parseAdapterConfig({ ...good, ...patch }, "a/adapter_config.json");
    expect(bad({ peft_type: "IA3" })).toThrow(/a\/adapter_config.json: peft_type "IA3"/);
    expect(bad({ use_dora: true })).toThrow(/DoRA/);
    expect(bad({ target_modules: ["q_proj"] })).toThrow(/"q_proj" is not one of GPT-2's Conv1D modules/);
    expect(bad({ target_modules: ".*attn.*" })).toThrow(/pattern/);
    expect(bad({ r: 0 })).toThrow(/"r" is 0/);
    expect(bad({ modules_to_save: ["wte"] })).toThrow(/modules_to_save/);
    expect(bad({ trainable_token_indices: { lm_head: [1] } })).toThrow(/only wte/);
    const model = GPT2.fromTensors(new CpuBackend(), base.config, base.tensors);
    const missing = new Map(adapter);
    missing.delete("base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight");
    await expect(model.attachLora(spec, missing)).rejects.toThrow(/missing base_model.model.transformer.h.1.mlp.c_fc/);
    await expect(model.attachLora({ ...spec, tokenIds: [V] })).rejects.toThrow(/trainable token id 343/);
    model.dispose();
  });

  test("an adapter directory's tensors: peft's .default names read, each bad tensor named once with the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lora-adapter-"));
    try {
      const P = "base_model.model.transformer.h";
      const write = async (tensors: Map<string, WriteTensor>) =>
        await writeFile(join(dir, ADAPTER_WEIGHTS), writeSafetensors(tensors));
      const renamed = new Map<string, WriteTensor>(
        [...adapter].map((
          [k, t],
        ) => [k.replace(/\.weight$/, ".default.weight").replace(/_delta$/, "_delta.default"), t]),
      );
      await write(renamed);
      const read = await readAdapterTensors(dir, spec, base.config);
      expect([...read.keys()]).toEqual([...adapter.keys()]);
      for (const [k, t] of adapter) expect(read.get(k)!.data).toEqual(t.data);

      const bad = new Map<string, WriteTensor>(adapter);
      const a0 = `${P}.0.attn.c_attn.lora_A.weight`, b1 = `${P}.1.mlp.c_fc.lora_B.weight`;
      const a1 = `${P}.1.attn.c_proj.lora_A.weight`;
      // an unexpected name that contains an expected one: that one is still missing
      bad.set(`${a0}_old`, bad.get(a0)!);
      bad.delete(a0);
      bad.set(b1, { shape: [1, 4], data: new Float32Array(4) });
      bad.set(a1, { shape: adapter.get(a1)!.shape, data: new Int32Array(adapter.get(a1)!.data.length) });
      await write(bad);
      const msg = await readAdapterTensors(dir, spec, base.config).then(() => "", (e: Error) => e.message);
      const head = `Cannot load the adapter ${join(dir, ADAPTER_WEIGHTS)}: `;
      expect(msg.slice(0, head.length)).toBe(head);
      expect(msg.slice(head.length).split("; ").sort()).toEqual(
        [
          `unexpected tensor ${a0}_old`,
          `missing ${a0}`,
          `${b1} is [1,4], expected [${adapter.get(b1)!.shape}]`,
          `${a1} is I32 (expected a float tensor)`,
        ].sort(),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const available = await webgpuForTests("lora_test");
const gpuTest = (name: string, fn: () => Promise<void>) => test.skipIf(!available)(name, fn, 120_000);

describe("LoRA vs peft on WebGPU", () => {
  gpuTest("logits, loss, adapter gradients, grad norm and the AdamW step", async () => {
    const be = await WebGpuBackend.create();
    try {
      await parity(be);
    } finally {
      be.dispose();
    }
  });

  gpuTest("LoRA dropout: the CPU's masks (the same loss and adapter gradients for the same seed)", async () => {
    const gpu = await WebGpuBackend.create();
    try {
      const results: { loss: number; grads: Float32Array[] }[] = [];
      for (const be of [new CpuBackend(), gpu]) {
        const model = GPT2.fromTensors(be, base.config, base.tensors);
        await model.attachLora({ ...spec, dropout: 0.3 }, adapter);
        model.zeroGrad();
        const { loss } = model.loss(batch, { backward: true, dropoutSeed: 5 });
        const grads = await Promise.all([...model.trainable.values()].map((t) => be.read(t.grad!)));
        results.push({ loss: (await be.read(loss))[0]!, grads: grads as Float32Array[] });
        model.dispose();
      }
      expect(Math.abs(results[1]!.loss - results[0]!.loss) / results[0]!.loss).toBeLessThan(1e-5);
      expect(Math.abs(results[0]!.loss - meta.loss)).toBeGreaterThan(1e-3); // the masks did drop something
      results[0]!.grads.forEach((g, i) => expectClose(results[1]!.grads[i]!, g, 1e-3, `dropout grad ${i}`));
    } finally {
      gpu.dispose();
    }
  });
});
