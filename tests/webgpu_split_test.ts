/**
 * Tensors larger than one storage binding on WebGPU (src/backend/webgpu/split.ts). GPT-2's tied token
 * embedding (50257 × 768 floats, 154 MB) and its logits at the default batch (206 MB) exceed WebGPU's default
 * 128 MiB binding; here a backend splits as if a binding held 16 KiB (`maxBindingBytes`), so that a tiny
 * model's embedding (509 × 24 floats, 48.9 KB) and logits (14 × 509 floats, 28.5 KB) take the same paths:
 * the embedding and its gradient in windows of rows, the LM head's three products in blocks, cross-entropy
 * in windows of rows, AdamW and the gradient norm over chunks larger than a binding. Every dispatch is held
 * to the lowered limit, so an op that did not split would fail here. 509 rows and 24 channels are
 * deliberately not multiples of the offset alignment.
 *
 * Tolerances: the split products add their K blocks one after the other where the unsplit kernel keeps one
 * running sum, so results differ from the unsplit run in the last float32 bits; against the CPU reference
 * (float64 sums in another order) the bounds are the parity check's (src/parity.ts) for a model this small.
 */

import { describe, expect, test } from "bun:test";
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { parseConfig } from "../src/model/config.ts";
import { GPT2, KvCache } from "../src/model/gpt2.ts";
import { onBoth, webgpuForTests } from "../src/testing/backends.ts";
import { assertClose } from "../src/testing/compare.ts";
import { AdamW } from "../src/train/adamw.ts";

const available = await webgpuForTests("webgpu_split_test");
const gpuTest = (name: string, fn: () => Promise<void>) => test.skipIf(!available)(name, fn, 120_000);

const LIMIT = 16 * 1024;
let splitBackend: WebGpuBackend | undefined, plainBackend: WebGpuBackend | undefined;
/** The backend that splits at 16 KiB (`split`), or one with the device's own limit. */
async function gpu(split: boolean): Promise<WebGpuBackend> {
  if (split) return splitBackend ??= await WebGpuBackend.create({ maxBindingBytes: LIMIT });
  return plainBackend ??= await WebGpuBackend.create();
}

/** A small deterministic PRNG (mulberry32), uniform in [lo, hi). */
function randn(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    a[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return a;
}

const V = 509, C = 24, B = 2, T = 7;
const config = parseConfig({
  model_type: "gpt2",
  vocab_size: V,
  n_positions: 16,
  n_embd: C,
  n_layer: 2,
  n_head: 2,
  layer_norm_epsilon: 1e-5,
  activation_function: "gelu_new",
  embd_pdrop: 0,
  resid_pdrop: 0,
  attn_pdrop: 0,
}, { file: "split test config" });

/** Ids over the whole vocabulary (every window of wte is hit, some ids twice), padding and ignored labels. */
const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 137 + 11) % V);
ids[3] = ids[9]!; // a token twice: the embedding gradient adds both positions
const attentionMask = Int32Array.from({ length: B * T }, (_, i) => (i === B * T - 1 ? 0 : 1));
const labels = Int32Array.from(ids, (v, i) => (i % T < 2 || attentionMask[i] === 0 ? -100 : v));
const batch = { B, T, inputIds: ids, attentionMask, labels };

/**
 * Loss and every gradient after one backward, every parameter after two clipped AdamW steps, then the logits of
 * the trained model through the KV cache (a prompt of T tokens, then one more token per row).
 */
async function train(be: Backend) {
  const model = GPT2.random(be, config, 3);
  const opt = new AdamW(be, model.params, { lr: 1e-2, weightDecay: 0.01, maxGradNorm: 0.5 }, model);
  const losses: number[] = [];
  const grads = new Map<string, Float32Array>();
  for (let step = 0; step < 2; step++) {
    model.zeroGrad();
    const { loss } = model.loss(batch, { backward: true });
    losses.push((await be.read(loss))[0]!);
    be.free(loss);
    if (step === 0) {
      for (const [name, t] of model.params) grads.set(name, (await be.read(t.grad!)) as Float32Array);
    }
    opt.step(1e-2);
  }
  const params = new Map<string, Float32Array>();
  for (const [name, t] of model.params) params.set(name, (await t.read()) as Float32Array);
  // inference with the KV cache: the prompt, then one token at each row's last position (the LM head's [B,V])
  const cache = new KvCache(be, config, B, T + 1);
  const prompt = await model.forwardCached({ ids, B, Tn: T, pos0: 0, cache });
  const next = await model.forwardCached({ ids: ids.slice(0, B), B, Tn: 1, pos0: T, cache, lastOnly: true });
  cache.dispose();
  model.dispose();
  return { losses, grads, params, path: opt.lastPath, prompt, next };
}

describe("webgpu: tensors larger than one binding", () => {
  gpuTest(
    "a GPT-2 whose embedding and logits exceed the binding limit trains as the CPU and the unsplit run",
    async () => {
      const g = await gpu(true);
      expect(g.maxBindingBytes).toBe(LIMIT);
      expect(V * C * 4).toBeGreaterThan(2 * LIMIT); // wte: three windows
      expect(B * T * V * 4).toBeGreaterThan(LIMIT); // the logits: two windows of rows
      const split = await train(g);
      const plain = await train(await gpu(false));
      const cpu = await train(new CpuBackend({ matmul: "reference" }));
      expect(split.path).toBe("grouped");
      for (let i = 0; i < 2; i++) {
        expect(Math.abs(split.losses[i]! - plain.losses[i]!)).toBeLessThan(1e-5);
        expect(Math.abs(split.losses[i]! - cpu.losses[i]!)).toBeLessThan(1e-5);
      }
      for (const [name, want] of cpu.grads) {
        assertClose(
          split.grads.get(name)!,
          plain.grads.get(name)!,
          { atol: 1e-6, rtol: 1e-4 },
          `${name} grad vs unsplit`,
        );
        assertClose(split.grads.get(name)!, want, { atol: 2e-6, rtol: 1e-3 }, `${name} grad vs CPU`);
      }
      assertClose(split.prompt, plain.prompt, { atol: 1e-6, rtol: 1e-4 }, "cached logits vs unsplit");
      assertClose(split.prompt, cpu.prompt, { atol: 2e-5, rtol: 1e-4 }, "cached logits vs CPU");
      assertClose(split.next, cpu.next, { atol: 2e-5, rtol: 1e-4 }, "next-token logits vs CPU");
      for (const [name, want] of cpu.params) {
        assertClose(split.params.get(name)!, plain.params.get(name)!, { atol: 2e-5, rtol: 1e-4 }, `${name} vs unsplit`);
        assertClose(split.params.get(name)!, want, { atol: 5e-5, rtol: 1e-3 }, `${name} after 2 steps vs CPU`);
      }
    },
  );

  gpuTest("split matmuls in every layout, with bias and accumulate, equal the CPU's", async () => {
    const g = await gpu(true), cpu = new CpuBackend({ matmul: "reference" });
    // out 37×300 and the operands of K = 45 / 130 exceed 4096 floats; neither 37, 45 nor 300 is aligned
    for (const [M, N, Kd] of [[37, 300, 45], [9, 61, 1300], [300, 37, 130]] as const) {
      for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
        const inputs = {
          a: randn(M * Kd, M + Kd),
          b: randn(Kd * N, N + 1),
          bias: randn(N, 7),
          out: randn(M * N, 8),
        };
        const r = await onBoth(cpu, g, inputs, (be, x) => {
          be.matmul({ out: x.out!, a: x.a!, b: x.b!, bias: x.bias!, M, N, K: Kd, transA, transB, accumulate: true });
        }, ["out"]);
        assertClose(r.gpu.out!, r.cpu.out!, { atol: 1e-5, rtol: 1e-5 }, `${M}×${N}×${Kd} ${transA} ${transB}`);
      }
    }
  });

  gpuTest("cross-entropy and the gradient norm over windows of rows equal the CPU's", async () => {
    const g = await gpu(true), cpu = new CpuBackend({ matmul: "reference" });
    const N = 30, VV = 501; // 60 KB of logits: windows of 8 rows (8 × 501 floats ≤ 16 KiB)
    const targets = Int32Array.from({ length: N }, (_, i) => (i % 7 === 3 ? -100 : (i * 389) % VV));
    const inputs = { logits: randn(N * VV, 4, -3, 3), targets, losses: new Float32Array(N), norm: new Float32Array(1) };
    const r = await onBoth(cpu, g, inputs, (be, x) => {
      be.globalNorm({ out: x.norm!, bufs: [x.logits!, x.losses!] });
      be.crossEntropy({
        losses: x.losses!,
        dlogits: x.logits!,
        logits: x.logits!,
        targets: x.targets!,
        N,
        V: VV,
        scale: 0.25,
      });
    }, ["losses", "logits", "norm"]);
    assertClose(r.gpu.norm!, r.cpu.norm!, { atol: 0, rtol: 1e-5 }, "norm");
    assertClose(r.gpu.losses!, r.cpu.losses!, { atol: 2e-6, rtol: 1e-5 }, "losses");
    assertClose(r.gpu.logits!, r.cpu.logits!, { atol: 1e-7, rtol: 1e-4 }, "dlogits");
  });

  gpuTest("an op that does not split, a tensor past maxBufferSize and a bad limit get clear errors", async () => {
    const g = await gpu(true);
    const big = g.alloc(5000, "f32", "big activation");
    expect(() => g.add({ out: big, a: big, b: big, n: 5000 })).toThrow(
      /Cannot dispatch add\.wgsl:main: out \("big activation"\) is 20000 bytes, more than one binding holds on this device \(16384 bytes/,
    );
    g.free(big);
    const tooLong = Math.floor(g.maxBufferBytes / 4) + 1;
    expect(() => g.alloc(tooLong, "f32", "logits")).toThrow(
      new RegExp(
        `Cannot allocate WebGPU buffer "logits": \\d+ bytes .* exceed the device's maxBufferSize of ${g.maxBufferBytes}`,
      ),
    );
    await expect(WebGpuBackend.create({ maxBindingBytes: 1000 })).rejects.toThrow(/Invalid maxBindingBytes 1000/);
    await g.sync(); // the errors above were raised before anything reached the device
  });
});
