/**
 * The CPU reference (src/backend/cpu/reference.ts) is the plain loops alone: it imports nothing of the fast
 * path (BLAS, WebAssembly SIMD, helper threads), and `CpuBackend` with `matmul: "reference"` (what
 * `GPT2_SFT_CPU=reference` selects) computes exactly what `CpuReferenceBackend` computes: a tiny GPT-2's loss
 * and every gradient with dropout, bit for bit.
 */
import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { type Backend } from "../src/backend/backend.ts";
import { CpuBackend, CpuReferenceBackend } from "../src/backend/cpu.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { loadModelDir } from "../src/io/model_dir.ts";
import { GPT2 } from "../src/model/gpt2.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/", import.meta.url).pathname;

describe("the CPU reference", () => {
  test("reference.ts imports only the backend interface and its argument checks, the profiler, the dropout hash, its buffers and activations", async () => {
    const src = await readFile(new URL("../src/backend/cpu/reference.ts", import.meta.url), "utf8");
    const imports = [...src.matchAll(/^import[^;]*?from "([^"]+)";/gms)].map((m) => m[1]).sort();
    expect(imports).toEqual([
      "../arg_checks.ts",
      "../backend.ts",
      "../dropout_hash.ts",
      "../profile.ts",
      "./activation.ts",
      "./memory.ts",
    ]);
  });

  test('CpuBackend({ matmul: "reference" }) is the reference: loss and gradients with dropout, bit for bit', async () => {
    const loaded = await loadModelDir(FIXTURE + "model");
    const ref = readSafetensors(await readFile(FIXTURE + "reference.safetensors"), "reference.safetensors");
    const I = (n: string) => ref.get(n)!.data as Int32Array;
    const [B, T] = ref.get("input_ids")!.shape as [number, number];
    const batch = { B, T, inputIds: I("input_ids"), attentionMask: I("attention_mask"), labels: I("labels") };
    const config = { ...loaded.config, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const run = async (be: Backend) => {
      const model = GPT2.fromTensors(be, config, loaded.tensors);
      const { loss } = model.loss(batch, { backward: true, dropoutSeed: 3 });
      const out = [await be.read(loss)];
      for (const t of model.params.values()) out.push(await be.read(t.grad!));
      be.dispose();
      return out;
    };
    const pure = await run(new CpuReferenceBackend());
    const selected = await run(new CpuBackend({ matmul: "reference" }));
    expect(selected.length).toBe(pure.length);
    for (const [i, a] of pure.entries()) {
      expect(new Uint32Array(selected[i]!.buffer)).toEqual(new Uint32Array(a.buffer));
    }
  });
});
