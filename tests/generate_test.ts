// Generation's logits processing, as Hugging Face's processors and warpers do it, and the generate loop's
// stopping rules. (Greedy generation of the whole model is checked against the fixture by the parity check.)
import { describe, expect, test } from "bun:test";
import { CpuBackend } from "../src/backend/cpu.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import {
  applyNoRepeatNgram,
  applyRepetitionPenalty,
  argmax,
  generate,
  generateBatch,
  sampleFromLogits,
  uniformRng,
} from "../src/model/generate.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { webgpuForTests } from "../src/testing/backends.ts";

describe("logits processors", () => {
  test("repetition penalty divides positive and multiplies negative scores of seen tokens, once each", () => {
    const x = Float32Array.of(2, -2, 3, 1);
    applyRepetitionPenalty(x, [0, 1, 1], 2);
    expect([...x]).toEqual([1, -4, 3, 1]);
  });
  test("no-repeat n-gram bans the tokens that would repeat a seen n-gram", () => {
    const x = new Float32Array(6);
    // sequence 1 2 3 … 1 2: the 3-gram "1 2 3" exists, so 3 is banned after "1 2"; so is 5 ("1 2 5")
    applyNoRepeatNgram(x, [1, 2, 3, 4, 1, 2, 5, 1, 2], 3);
    expect([...x].map((v) => v === -Infinity)).toEqual([false, false, false, true, false, true]);
    const y = new Float32Array(4);
    applyNoRepeatNgram(y, [1, 2], 3); // too short for a 3-gram: nothing banned
    expect([...y].every((v) => v === 0)).toBe(true);
  });
  test("argmax takes the first maximum, as torch.argmax", () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });
});

describe("sampling", () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  const logits = Float32Array.from(probs, Math.log);
  const counts = (opts: { temperature?: number; topK?: number; topP?: number }, n = 4000) => {
    const random = uniformRng(7), c = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) c[sampleFromLogits(logits, { ...opts, random })]!++;
    return c.map((k) => k / n);
  };
  test("plain sampling follows the softmax (within 4 sigma of 4000 draws)", () => {
    const f = counts({});
    for (const [i, p] of probs.entries()) expect(Math.abs(f[i]! - p)).toBeLessThan(4 * Math.sqrt(p * (1 - p) / 4000));
  });
  test("top-p 0.8 keeps the smallest set reaching 0.8 (0.5 + 0.3), renormalised", () => {
    const f = counts({ topP: 0.8 });
    expect(f[2]).toBe(0);
    expect(f[3]).toBe(0);
    expect(Math.abs(f[0]! - 0.625)).toBeLessThan(0.04);
  });
  test("top-p keeps at least one token; top-k 1 is greedy", () => {
    expect(counts({ topP: 0.1 })).toEqual([1, 0, 0, 0]);
    expect(counts({ topK: 1 })).toEqual([1, 0, 0, 0]);
  });
  test("a low temperature sharpens the distribution", () => {
    expect(counts({ temperature: 0.1 })[0]).toBeGreaterThan(0.99);
  });
});

const be = new CpuBackend();
const m = await loadModelDir(new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname);
const model = GPT2.fromTensors(be, m.config, m.tensors);
const available = await webgpuForTests("generate_test");

describe("generate", () => {
  const prompt = [2, 281, 300, 301, 120, 130, 3];
  test("stops at max_new_tokens, and right after an eos id (which it includes)", async () => {
    const free = await generate(model, prompt, { maxNewTokens: 6 });
    expect(free.length).toBe(6);
    const eos = free[2]!;
    const stopped = await generate(model, prompt, { maxNewTokens: 6, eosTokenId: eos });
    expect(stopped[stopped.length - 1]).toBe(eos);
    expect(stopped.length).toBeLessThanOrEqual(3);
  });
  test("sampling is reproducible by seed; temperature 0 is greedy", async () => {
    const a = await generate(model, prompt, { maxNewTokens: 8, doSample: true, topP: 0.9, seed: 3 });
    const b = await generate(model, prompt, { maxNewTokens: 8, doSample: true, topP: 0.9, seed: 3 });
    expect(a).toEqual(b);
    const greedy = await generate(model, prompt, { maxNewTokens: 8 });
    expect(await generate(model, prompt, { maxNewTokens: 8, doSample: true, temperature: 0 })).toEqual(greedy);
  });
  test("an empty prompt or one that fills the positions is an error", async () => {
    await expect(generate(model, [], { maxNewTokens: 4 })).rejects.toThrow("the prompt has no tokens");
    await expect(generate(model, new Array(256).fill(5), { maxNewTokens: 4 })).rejects.toThrow("n_positions is 256");
  });
});

describe("generateBatch", () => {
  // lengths 7, 3, 12, 1 and 250 (6 positions left of the fixture's 256) in batches of 3: after sorting by
  // length [1, 3, 7] and [12, 250], so rows are left-padded by up to 238 positions and stop at different steps
  const r = uniformRng(11);
  const lengths = [7, 3, 12, 1, 250];
  const prompts = lengths.map((n, i) => ({
    ids: Array.from({ length: n }, () => 5 + Math.floor(r() * 330)),
    seed: 40 + i,
  }));
  const settings = [
    { name: "greedy, the notebook's penalties", maxNewTokens: 10, repetitionPenalty: 1.1, noRepeatNgramSize: 3 },
    { name: "sampling, seeded per prompt", maxNewTokens: 10, doSample: true, temperature: 0.7, topP: 0.9 },
  ];
  const check = async (mdl: GPT2) => {
    for (const { name, ...opts } of settings) {
      const alone = [];
      for (const p of prompts) alone.push(await generate(mdl, p.ids, { ...opts, seed: p.seed }));
      const eos = alone[0]![3]!; // a row that stops early
      const aloneEos = [];
      for (const p of prompts) aloneEos.push(await generate(mdl, p.ids, { ...opts, seed: p.seed, eosTokenId: eos }));
      expect({ name, ids: await generateBatch(mdl, prompts, { ...opts, batchSize: 3 }) }).toEqual({ name, ids: alone });
      expect({ name, ids: await generateBatch(mdl, prompts, { ...opts, batchSize: 3, eosTokenId: eos }) })
        .toEqual({ name, ids: aloneEos });
      expect(alone[4]!.length).toBe(6); // the long prompt's own budget
      expect(aloneEos[0]!.length).toBe(4);
    }
  };
  test("each row generates what generate() does alone (cpu)", () => check(model), 60_000);
  test.skipIf(!available)("each row generates what generate() does alone (webgpu)", async () => {
    const gpu = await WebGpuBackend.create();
    try {
      await check(GPT2.fromTensors(gpu, m.config, m.tensors));
    } finally {
      gpu.dispose();
    }
  }, 120_000);
  test("finished rows leave the batch: later steps run fewer rows", async () => {
    const cpu = new CpuBackend();
    const seen: number[] = [];
    const attend = cpu.attentionCached.bind(cpu);
    cpu.attentionCached = (args) => {
      seen.push(args.B);
      attend(args);
    };
    const mdl = GPT2.fromTensors(cpu, m.config, m.tensors);
    const four = prompts.slice(0, 4), opts = { maxNewTokens: 10 };
    const alone = [];
    for (const p of four) alone.push(await generate(mdl, p.ids, opts));
    const eos = alone[1]![1]!; // row 1 stops after 2 tokens (others may too, where they produce it)
    const want = [];
    for (const p of four) want.push(await generate(mdl, p.ids, { ...opts, eosTokenId: eos }));
    seen.length = 0;
    expect(await generateBatch(mdl, four, { ...opts, eosTokenId: eos, batchSize: 4 })).toEqual(want);
    const perStep = seen.filter((_, i) => i % m.config.nLayer === 0); // one call per layer per step
    expect(perStep[0]).toBe(4); // the prompts
    // after row 1's second token 3 of 4 rows are live (the 3/4 rule): no later step runs 4 rows
    expect(perStep.slice(2).every((b) => b < 4)).toBe(true);
    expect(perStep.length).toBe(Math.max(...want.map((w) => w.length)));
    mdl.dispose();
  });

  test("an empty or too long prompt is an error naming it", async () => {
    await expect(generateBatch(model, [{ ids: [5] }, { ids: [] }], { maxNewTokens: 4 })).rejects.toThrow(
      "prompt 1 has no tokens",
    );
    await expect(generateBatch(model, [{ ids: new Array(256).fill(5) }], { maxNewTokens: 4 })).rejects.toThrow(
      "prompt 0 has 256 tokens, the model's n_positions is 256",
    );
  });
});
