/**
 * `deno task train --lora` end to end on the tiny fixture (its hub layout without the SFT tokens, so that the
 * added tokens' rows train): the adapter directory in peft's layout (the names, shapes and config fields of the
 * adapter peft itself saved for the fixture), `--merge`, loading the adapter for inference (as the model, or
 * with `adapter`; the embeddings resized and the adapter merged on the host, the weights placed once), resuming
 * a LoRA run exactly, and the flags' errors.
 */

import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../src/backend/cpu.ts";
import { trainMain } from "../src/cli/train.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { readAdapterConfig, readAdapterTensors } from "../src/io/adapter_dir.ts";
import { loadModelDir, saveModelDir } from "../src/io/model_dir.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { webgpuForTests } from "../src/testing/backends.ts";
import { checkSftDir } from "../src/eval/plan.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import { adapterShapes, mergeAdapter } from "../src/model/lora.ts";
import { startFakeHub } from "./helpers/fake_hub.ts";

const BASE = new URL("./fixtures/tiny-gpt2-zh/model-bin", import.meta.url).pathname;
const PEFT_ADAPTER = new URL("./fixtures/tiny-gpt2-zh/lora/adapter", import.meta.url).pathname;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "lora-cli-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const common = (dir: string) => [
  "--model",
  BASE,
  "--data-dir",
  join(dir, "data"),
  "--limit-train",
  "12",
  "--limit-val",
  "4",
  "--lr",
  "3e-3",
  "--warmup-steps",
  "0",
  "--backend",
  "cpu",
  "--quiet",
];

async function logits(model: GPT2, ids: Int32Array): Promise<Float32Array> {
  return await model.forwardCached({
    ids,
    B: 1,
    Tn: ids.length,
    pos0: 0,
    cache: new (await import("../src/model/gpt2.ts")).KvCache(model.be, model.config, 1, ids.length),
  });
}

describe("train --lora", () => {
  test("saves peft's adapter layout, merges, and loads back for inference the same either way", async () => {
    await withDir(async (dir) => {
      const out = join(dir, "out"), lines: string[] = [];
      const code = await trainMain(
        [...common(dir), "--max-steps", "3", "--out", out, "--run-dir", join(dir, "run"), "--lora", "--merge"],
        (l) => lines.push(l),
      );
      expect(code).toBe(0);
      expect(lines.some((l) => /^ {2}LoRA: r 8, alpha 16, dropout 0.05, on c_attn, c_proj, c_fc; 63 trainable/.test(l)))
        .toBe(true);
      expect(lines).toContain(`Saved the LoRA adapter to ${out}`);
      // the adapter directory: peft's two files (same config fields and tensor names as peft's own save)
      const files = await readdir(out);
      for (const f of ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "sft_task.json"]) {
        expect(files).toContain(f);
      }
      expect(files).not.toContain("model.safetensors");
      const ours = JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8"));
      const peft = JSON.parse(await readFile(join(PEFT_ADAPTER, "adapter_config.json"), "utf8"));
      for (const k of ["peft_type", "task_type", "fan_in_fan_out", "bias", "use_dora", "use_rslora"]) {
        expect({ k, v: ours[k] }).toEqual({ k, v: peft[k] });
      }
      expect(ours.base_model_name_or_path).toBe(BASE);
      expect(ours.trainable_token_indices.wte).toEqual(Array.from({ length: 63 }, (_, i) => 280 + i));
      const { spec } = await readAdapterConfig(out);
      const tensors = readSafetensors(await readFile(join(out, "adapter_model.safetensors")), "adapter");
      const peftTensors = readSafetensors(
        await readFile(join(PEFT_ADAPTER, "adapter_model.safetensors")),
        "peft adapter",
      );
      const cfg = { ...(await loadModelAndTokenizer(BASE, new CpuBackend(), { prepare: false })).model.config };
      const shapes = adapterShapes({ ...cfg, vocabSize: 343 }, spec);
      expect([...tensors.keys()].sort()).toEqual([...shapes.keys()].sort());
      // the same names as peft's own adapter (which has r 4 and 3 token rows: the shapes differ)
      expect([...tensors.keys()].sort()).toEqual([...peftTensors.keys()].sort());
      for (const [k, t] of tensors) expect(t.dtype).toBe(peftTensors.get(k)!.dtype);

      // the adapter as the model (merged at load), with `adapter`, and the merged directory: the same logits
      const be = new CpuBackend();
      const ids = Int32Array.from([281, 5, 17, 99, 282, 281]);
      const asModel = await loadModelAndTokenizer(out, be, { prepare: false });
      expect(asModel.adapter?.base).toBe(BASE);
      const withAdapter = await loadModelAndTokenizer(BASE, be, { prepare: false, adapter: out });
      const merged = await loadModelAndTokenizer(`${out}-merged`, be, { prepare: false });
      const plain = await loadModelAndTokenizer(BASE, be, { prepare: true });
      const want = await logits(merged.model, ids);
      expect(await logits(asModel.model, ids)).toEqual(want);
      expect(await logits(withAdapter.model, ids)).toEqual(want);
      // and the adapter changed the model
      expect(await logits(plain.model, ids)).not.toEqual(want);
      expect((await checkSftDir(out))?.task).toBe("classification");
    });
  }, 120_000);

  test("a LoRA run resumed from its checkpoint ends with the adapter of one uninterrupted run", async () => {
    await withDir(async (dir) => {
      const args = [...common(dir), "--lora", "--lora-r", "2", "--lora-dropout", "0.1", "--checkpoint-every", "2"];
      expect(
        await trainMain([...args, "--max-steps", "4", "--out", join(dir, "a"), "--run-dir", join(dir, "ra")], () => {}),
      )
        .toBe(0);
      expect(
        await trainMain([...args, "--max-steps", "2", "--out", join(dir, "b"), "--run-dir", join(dir, "rb")], () => {}),
      )
        .toBe(0);
      const lines: string[] = [];
      expect(
        await trainMain(
          ["--resume", "--run-dir", join(dir, "rb"), "--max-steps", "4", "--quiet"],
          (l) => lines.push(l),
        ),
      ).toBe(0);
      expect(lines).toContain(`Resumed from ${join(dir, "rb", "checkpoint")} at step 2 (epoch 1, batch 2)`);
      const read = async (d: string) => readSafetensors(await readFile(join(d, "adapter_model.safetensors")), d);
      const [a, b] = [await read(join(dir, "a")), await read(join(dir, "b"))];
      for (const [k, t] of a) expect({ k, data: b.get(k)!.data }).toEqual({ k, data: t.data });
      // the checkpoint is an adapter directory: it loads for inference as well
      const ck = await loadModelAndTokenizer(join(dir, "rb", "checkpoint"), new CpuBackend(), { prepare: false });
      expect(ck.adapter?.spec.r).toBe(2);
      // a full fine-tune's checkpoint does not resume as LoRA, nor the reverse
      await expect(
        trainMain(["--resume", "--run-dir", join(dir, "rb"), "--max-steps", "6", "--lora-r", "4"], () => {}),
      ).rejects.toThrow(/Cannot resume from .*--lora \{"r":4,.* here, --lora \{"r":2,.* in the checkpoint/);
    });
  }, 180_000);

  test("an adapter on the hub: fetched (config and weights) and merged into the base given", async () => {
    const hub = await startFakeHub({ repos: { "org/tiny-lora": PEFT_ADAPTER } });
    const cacheDir = await mkdtemp(join(tmpdir(), "lora-hub-"));
    try {
      const be = new CpuBackend();
      const base = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
      const hubOpts = { cacheDir, endpoint: hub.url, env: {}, quiet: true, retryDelayMs: 5 };
      const fromHub = await loadModelAndTokenizer(base, be, { prepare: false, adapter: "org/tiny-lora", hub: hubOpts });
      const local = await loadModelAndTokenizer(base, be, { prepare: false, adapter: PEFT_ADAPTER });
      expect(fromHub.adapter?.spec).toEqual(local.adapter?.spec);
      const ids = Int32Array.from([281, 5, 17, 99, 282, 281]);
      expect(await logits(fromHub.model, ids)).toEqual(await logits(local.model, ids));
      expect(hub.unknown).toEqual([]);
      expect(hub.requests.some((r) => r.url.includes("adapter_model.safetensors"))).toBe(true);
    } finally {
      await hub.close();
      await rm(cacheDir, { recursive: true, force: true });
    }
  }, 60_000);

  test(
    "an adapter on a base without the SFT rows: resized and merged on the host as on the device, placed once",
    async () => {
      await withDir(async (dir) => {
        // the fixture's base with only its tokenizer's 280 rows: loading adds the SFT tokens and draws 63 rows
        const small = join(dir, "base-280");
        const full = await loadModelDir(BASE);
        const WTE = "transformer.wte.weight", V0 = 280, C = full.config.nEmbd;
        const extraFiles: Record<string, Uint8Array> = {};
        for (const f of ["vocab.txt", "special_tokens_map.json", "tokenizer_config.json"]) {
          extraFiles[f] = await readFile(join(BASE, f));
        }
        const wte = full.tensors.get(WTE)!.data.slice(0, V0 * C);
        const tensors = new Map(full.tensors).set(WTE, { shape: [V0, C], data: wte });
        await saveModelDir(small, { config: { ...full.config, vocabSize: V0 }, tensors, extraFiles });
        const { spec } = await readAdapterConfig(PEFT_ADAPTER);
        const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
        /** Counts the parameter groups placed. */
        class Counting extends CpuBackend {
          groups = 0;
          override allocGroup(lengths: readonly number[], label?: string, names?: readonly string[]) {
            this.groups++;
            return super.allocGroup(lengths, label, names);
          }
        }
        const backends: [string, () => Promise<CpuBackend | WebGpuBackend>][] = [
          ["cpu", () => Promise.resolve(new Counting())],
        ];
        if (await webgpuForTests("lora_cli_test")) backends.push(["webgpu", () => WebGpuBackend.create()]);
        const opts = { prepare: true, seed: 5, adapter: PEFT_ADAPTER, warn: () => {} };
        for (const [name, make] of backends) {
          const be = await make();
          try {
            const pair = await loadModelAndTokenizer(small, be, opts);
            if (be instanceof Counting) expect(be.groups).toBe(1);
            expect([pair.baseVocab, pair.model.config.vocabSize]).toEqual([V0, 343]);
            // as loading did before: the base on the device, resized there, read back and merged on the host
            const base = await loadModelDir(small, { warn: () => {} });
            const ref = GPT2.fromTensors(be, base.config, base.tensors);
            await ref.resizeTokenEmbeddings(343, 5);
            expect(pair.model.config).toEqual(ref.config);
            const adapter = await readAdapterTensors(PEFT_ADAPTER, spec, ref.config);
            const want = mergeAdapter(ref.config, spec, await ref.toTensors(), adapter);
            const got = await pair.model.toTensors();
            expect([...got.keys()]).toEqual([...want.keys()]);
            const differ = [...want].filter(([k, t]) => bits(got.get(k)!.data).some((v, i) => v !== bits(t.data)[i]));
            expect({ name, differ: differ.map(([k]) => k) }).toEqual({ name, differ: [] });
            // the new rows the adapter does not train are the seed's
            const other = await loadModelAndTokenizer(small, be, { ...opts, seed: 6 });
            const row = async (m: GPT2) => (await m.param(WTE).read()).slice(342 * C);
            expect(await row(other.model)).not.toEqual(await row(pair.model));
            for (const m of [pair.model, ref, other.model]) m.dispose();
          } finally {
            be.dispose();
          }
        }
      });
    },
    60_000,
  );

  test("flag errors", async () => {
    await withDir(async (dir) => {
      const args = [...common(dir), "--out", join(dir, "o"), "--run-dir", join(dir, "r")];
      await expect(trainMain([...args, "--lora-r", "4"], () => {})).rejects.toThrow("Invalid --lora-r without --lora");
      await expect(trainMain([...args, "--merge"], () => {})).rejects.toThrow(/Invalid --merge: .* add --lora/);
      await expect(trainMain([...args, "--merge-out", "x"], () => {})).rejects.toThrow(
        "Invalid --merge-out without --merge",
      );
      await expect(trainMain([...args, "--lora", "--lora-targets", "c_attn,q_proj"], () => {})).rejects.toThrow(
        `Invalid --lora-targets: "q_proj" (GPT-2's Conv1D modules are c_attn, c_proj, c_fc)`,
      );
      await expect(trainMain([...args, "--lora", "--lora-r", "0"], () => {})).rejects.toThrow(/--lora-r/);
      await expect(trainMain([...args, "--lora", "--lora-train-tokens", "some"], () => {})).rejects.toThrow(
        /--lora-train-tokens/,
      );
    });
  }, 60_000);
});
