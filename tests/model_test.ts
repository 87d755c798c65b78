// GPT-2 in training mode: dropout at the config's rates changes the loss, is reproducible from its seed, and
// its gradient is right (central differences of the whole model with the same masks).
import { describe, expect, test } from "bun:test";
import { CpuBackend } from "../src/backend/cpu.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { readFile } from "node:fs/promises";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/", import.meta.url).pathname;
const be = new CpuBackend({ matmul: "reference" });
const loaded = await loadModelDir(FIXTURE + "model");
const ref = readSafetensors(await readFile(FIXTURE + "reference.safetensors"), "reference.safetensors");
const I = (n: string) => ref.get(n)!.data as Int32Array;
const [B, T] = ref.get("input_ids")!.shape as [number, number];
const batch = { B, T, inputIds: I("input_ids"), attentionMask: I("attention_mask"), labels: I("labels") };
const config = { ...loaded.config, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
const model = GPT2.fromTensors(be, config, loaded.tensors);

async function lossOf(opts: { dropoutSeed?: number; backward?: boolean }): Promise<number> {
  const { loss } = model.loss(batch, { backward: true, ...opts });
  const v = (await be.read(loss))[0]!;
  be.free(loss);
  return v;
}

describe("dropout in the model", () => {
  test("training-mode loss differs from eval mode, and is the same for the same seed", async () => {
    model.zeroGrad();
    const plain = await lossOf({});
    const a = await lossOf({ dropoutSeed: 1 }),
      b = await lossOf({ dropoutSeed: 1 }),
      c = await lossOf({ dropoutSeed: 2 });
    model.zeroGrad();
    expect(a).toBe(b);
    expect(a).not.toBe(plain);
    expect(c).not.toBe(a);
  });

  test("the gradient with dropout matches central differences of the dropped-out loss", async () => {
    const seed = 5;
    model.zeroGrad();
    await lossOf({ dropoutSeed: seed });
    // Position embeddings of one position get their gradient from 3 rows only (no averaging over the batch that
    // could hide a wrong mask); every layer's attention and residual dropout lies between them and the loss.
    const t = model.param("transformer.wpe.weight");
    const C = config.nEmbd, pos = 7;
    const grad = ((await be.read(t.grad!)) as Float32Array).slice(pos * C, (pos + 1) * C);
    const order = [...grad.keys()].sort((a, b) => Math.abs(grad[b]!) - Math.abs(grad[a]!)).slice(0, 4);
    const w = (await t.read()) as Float32Array;
    for (const c of order) {
      const i = pos * C + c, h = 1e-2, orig = w[i]!;
      const at = async (v: number) => {
        be.write(t.buf, Float32Array.of(v), i);
        const l = model.loss(batch, { dropoutSeed: seed, backward: false });
        const x = (await be.read(l.loss))[0]!;
        be.free(l.loss);
        return x;
      };
      const fd = ((await at(orig + h)) - (await at(orig - h))) / (2 * h);
      be.write(t.buf, Float32Array.of(orig), i);
      // float32 loss (~6, ulp ~5e-7) over 2h = 0.02 gives ~3e-5 noise; curvature over h: ~1 %
      expect(Math.abs(fd - grad[c]!)).toBeLessThan(0.02 * Math.abs(grad[c]!) + 5e-5);
    }
    model.zeroGrad();
  });
});
