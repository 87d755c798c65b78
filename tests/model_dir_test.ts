import { describe, expect, test } from "bun:test";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { atomicWriteDir, atomicWriteFile, isFile } from "../src/io/atomic.ts";
import { expectedParamShapes, loadModelDir, saveModelDir } from "../src/io/model_dir.ts";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.ts";
import { activationOf, configToJson, parseConfig } from "../src/model/config.ts";
import { assertClose } from "../src/testing/compare.ts";

const FIX = "tests/fixtures/tiny-gpt2-zh";

const created: string[] = [];

/** A fresh temp dir, removed when the test that made it ends (see {@link tmpTest}). */
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "model-dir-test-"));
  created.push(d);
  return d;
}

/** `test`, removing the temp dirs the test made, whether it passes or fails. */
function tmpTest(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    try {
      await fn();
    } finally {
      for (const d of created.splice(0)) await rm(d, { recursive: true, force: true });
    }
  });
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** A temp model dir with the fixture's config and the given tensors as model.safetensors. */
async function dirWith(
  tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array }>,
  config?: unknown,
): Promise<string> {
  const dir = await tempDir();
  const cfg = config ?? JSON.parse(await readFile(`${FIX}/model/config.json`, "utf8"));
  await writeFile(join(dir, "config.json"), JSON.stringify(cfg));
  await writeFile(join(dir, "model.safetensors"), writeSafetensors(tensors));
  return dir;
}

describe("loadModelDir on the fixtures", () => {
  tmpTest("all four weight formats load to the same parameters", async () => {
    const ref = JSON.parse(await readFile(`${FIX}/reference.json`, "utf8")) as { param_names: string[] };
    const base = await loadModelDir(`${FIX}/model`);
    expect(base.weightsFile).toBe(join(`${FIX}/model`, "model.safetensors"));
    expect([...base.tensors.keys()]).toEqual(ref.param_names);
    expect([...expectedParamShapes(base.config).keys()]).toEqual(ref.param_names);
    expect(base.config.bosTokenId).toBe(2);
    expect(base.config.padTokenId).toBe(280);

    for (const variant of ["model-bin", "model-bin-legacy"]) {
      const warnings: string[] = [];
      const m = await loadModelDir(`${FIX}/${variant}`, { warn: (w) => warnings.push(w) });
      expect(m.weightsFile.endsWith("pytorch_model.bin")).toBe(true);
      expect([...m.tensors.keys()]).toEqual(ref.param_names);
      for (const [name, t] of base.tensors) {
        expect(m.tensors.get(name)!.shape).toEqual(t.shape);
        // Tolerance 0: the .bin files were written from the same float32 values.
        expect(bitsEqual(m.tensors.get(name)!.data, t.data)).toBe(true);
      }
      // bos/eos 50256 lie outside vocab 343: unset, with a warning each; lm_head equals wte: no warning.
      expect(m.config.bosTokenId).toBeUndefined();
      expect(m.config.eosTokenId).toBeUndefined();
      expect(warnings).toHaveLength(2);
      expect(warnings[0]).toContain("bos_token_id 50256 is outside the vocabulary [0, 343); treating it as unset");
    }

    const f16 = await loadModelDir(`${FIX}/model-f16`);
    for (const [name, t] of base.tensors) {
      // F16 keeps 11 significant bits and rounds to nearest: a normal value is off by at most half an
      // ulp, 2^-11 relative; a value in F16's subnormal range (< 2^-14) by at most half the subnormal
      // spacing, 2^-25 absolute. The decode itself is exact, so these bounds are tight.
      assertClose(f16.tensors.get(name)!.data, t.data, { atol: 2 ** -25, rtol: 2 ** -11 }, `${name} (F16)`);
    }
  });
});

describe("saveModelDir", () => {
  tmpTest("round trip: save, load back bit-identical; HF files; tied lm_head not saved", async () => {
    const base = await loadModelDir(`${FIX}/model`);
    const dir = join(await tempDir(), "sft-model");
    await saveModelDir(dir, {
      config: base.config,
      tensors: base.tensors,
      extraFiles: { "vocab.txt": await readFile(`${FIX}/model/vocab.txt`, "utf8"), "blob.bin": new Uint8Array([1, 2]) },
    });
    expect((await readdir(dir)).sort()).toEqual(
      ["blob.bin", "config.json", "generation_config.json", "model.safetensors", "vocab.txt"],
    );
    const back = await loadModelDir(dir);
    for (const [name, t] of base.tensors) expect(bitsEqual(back.tensors.get(name)!.data, t.data)).toBe(true);
    const st = readSafetensors(new Uint8Array(await readFile(join(dir, "model.safetensors"))), "saved");
    expect(st.has("lm_head.weight")).toBe(false);
    expect(st.size).toBe(28);
    const cfg = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    expect(cfg.model_type).toBe("gpt2");
    expect(cfg.architectures).toEqual(["GPT2LMHeadModel"]);
    expect(cfg.tokenizer_class).toBe("BertTokenizer"); // an unmodelled field of raw, kept
    expect(cfg.pad_token_id).toBe(280);
    const gen = JSON.parse(await readFile(join(dir, "generation_config.json"), "utf8"));
    expect(gen).toEqual({ _from_model_config: true, bos_token_id: 2, eos_token_id: 3, pad_token_id: 280 });
    expect(await readFile(join(dir, "vocab.txt"), "utf8")).toBe(await readFile(`${FIX}/model/vocab.txt`, "utf8"));

    // Saving again replaces the dir whole (a file of the previous save that is not rewritten is gone).
    await saveModelDir(dir, { config: base.config, tensors: base.tensors, generationConfig: { eos_token_id: 3 } });
    expect((await readdir(dir)).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors"]);
    expect((await readdir(join(dir, ".."))).length).toBe(1); // no temp or old dirs left behind
  });

  tmpTest("refuses to save wrong tensors, and to replace a dir that is not a model dir", async () => {
    const base = await loadModelDir(`${FIX}/model`);
    const bad = new Map(base.tensors);
    bad.delete("transformer.ln_f.bias");
    await expect(saveModelDir(join(await tempDir(), "x"), { config: base.config, tensors: bad })).rejects.toThrow(
      "missing transformer.ln_f.bias [64]",
    );
    const notModel = await tempDir();
    await writeFile(join(notModel, "notes.txt"), "keep me");
    await expect(saveModelDir(notModel, { config: base.config, tensors: base.tensors })).rejects.toThrow(
      "it exists and does not look like a previous save (no config.json); refusing to replace it",
    );
    expect(await readFile(join(notModel, "notes.txt"), "utf8")).toBe("keep me");
  });
});

describe("loadModelDir errors and normalisation", () => {
  tmpTest("a dir without weights names the dir and the files looked for", async () => {
    const dir = await tempDir();
    await copyFile(`${FIX}/model/config.json`, join(dir, "config.json"));
    await expect(loadModelDir(dir)).rejects.toThrow(
      `Cannot load model from ${dir}: no weights file (looked for model.safetensors, model.safetensors.index.json, ` +
        "pytorch_model.bin, pytorch_model.bin.index.json)",
    );
  });

  tmpTest("a dir without config.json", async () => {
    const dir = await tempDir();
    await expect(loadModelDir(dir)).rejects.toThrow(`Cannot load model from ${dir}: no config.json`);
  });

  tmpTest("a config without a needed field names the file and the field", async () => {
    const cfg = JSON.parse(await readFile(`${FIX}/model/config.json`, "utf8"));
    delete cfg.n_head;
    const dir = await dirWith(new Map(), cfg);
    await expect(loadModelDir(dir)).rejects.toThrow(`Cannot read ${join(dir, "config.json")}: missing field "n_head"`);
  });

  tmpTest("missing, unexpected and wrongly shaped tensors are listed together, naming the file", async () => {
    const base = await loadModelDir(`${FIX}/model`);
    const t = new Map<string, { shape: number[]; data: Float32Array }>(base.tensors);
    t.delete("transformer.h.1.mlp.c_fc.bias");
    t.set("transformer.wpe.weight", { shape: [128, 64], data: new Float32Array(128 * 64) });
    t.set("transformer.h.2.ln_1.weight", { shape: [64], data: new Float32Array(64) });
    const dir = await dirWith(t);
    const file = join(dir, "model.safetensors");
    let msg = "";
    try {
      await loadModelDir(dir);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain(`Cannot load model from ${file}: 3 tensor problems for the config`);
    expect(msg).toContain("\n  transformer.wpe.weight has shape [128, 64], expected [256, 64]");
    expect(msg).toContain("\n  missing transformer.h.1.mlp.c_fc.bias [256]");
    expect(msg).toContain("\n  unexpected transformer.h.2.ln_1.weight [64]");
  });

  tmpTest(
    "names without the transformer. prefix load; an integer parameter is reported; an untied lm_head warns",
    async () => {
      const base = await loadModelDir(`${FIX}/model`);
      const t = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
      for (const [k, v] of base.tensors) t.set(k.replace(/^transformer\./, ""), v);
      t.set("lm_head.weight", { shape: [343, 64], data: new Float32Array(343 * 64) });
      t.set("h.0.attn.masked_bias", { shape: [], data: new Float32Array([-1e4]) });
      const warnings: string[] = [];
      const m = await loadModelDir(await dirWith(t), { warn: (w) => warnings.push(w) });
      expect([...m.tensors.keys()]).toEqual([...base.tensors.keys()]);
      expect(warnings.some((w) => w.includes("lm_head.weight differs from transformer.wte.weight; it is ignored")))
        .toBe(
          true,
        );
      t.set("ln_f.bias", { shape: [64], data: new Int32Array(64) });
      await expect(loadModelDir(await dirWith(t))).rejects.toThrow(
        "transformer.ln_f.bias has integer dtype I32, expected a float tensor",
      );
    },
  );

  tmpTest("a sharded checkpoint loads through its index", async () => {
    const base = await loadModelDir(`${FIX}/model`);
    const dir = await tempDir();
    await copyFile(`${FIX}/model/config.json`, join(dir, "config.json"));
    const names = [...base.tensors.keys()], half = names.length / 2;
    const shard = (ns: string[]) => new Map(ns.map((n) => [n, base.tensors.get(n)!]));
    await writeFile(join(dir, "model-00001-of-00002.safetensors"), writeSafetensors(shard(names.slice(0, half))));
    await writeFile(join(dir, "model-00002-of-00002.safetensors"), writeSafetensors(shard(names.slice(half))));
    const weight_map = Object.fromEntries(
      names.map((n, i) => [n, `model-0000${i < half ? 1 : 2}-of-00002.safetensors`]),
    );
    await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map }));
    const m = await loadModelDir(dir);
    expect(m.weightsFile.endsWith("model.safetensors.index.json")).toBe(true);
    for (const [name, t] of base.tensors) expect(bitsEqual(m.tensors.get(name)!.data, t.data)).toBe(true);
  });
});

describe("parseConfig / configToJson", () => {
  const minimal = { vocab_size: 10, n_ctx: 8, n_embd: 6, n_layer: 1, n_head: 2 };

  test("defaults, n_ctx for n_positions, and round trip through configToJson", () => {
    const c = parseConfig({ ...minimal, custom_field: "kept" }, { file: "config.json" });
    expect(c.nPositions).toBe(8);
    expect(c.layerNormEpsilon).toBe(1e-5);
    expect(c.activationFunction).toBe("gelu_new");
    expect(c.tieWordEmbeddings).toBe(true);
    expect(c.embdPdrop).toBe(0.1);
    const j = configToJson(c);
    expect(j.custom_field).toBe("kept");
    expect(j.n_positions).toBe(8);
    expect(j.n_ctx).toBeUndefined();
    expect(j.bos_token_id).toBeNull();
    const again = parseConfig(j, { file: "x" });
    expect({ ...again, raw: {} }).toEqual({ ...c, raw: {} });
  });

  test("activation_function: transformers' names of the activations computed here, kept as written", () => {
    const f = { file: "cfg.json" };
    const want: Record<string, string> = {
      gelu_new: "gelu_new",
      gelu_pytorch_tanh: "gelu_new",
      gelu_fast: "gelu_new",
      gelu: "gelu",
      gelu_python: "gelu",
      relu: "relu",
      silu: "silu",
      swish: "silu",
      quick_gelu: "quick_gelu",
    };
    for (const [name, act] of Object.entries(want)) {
      const c = parseConfig({ ...minimal, activation_function: name }, f);
      expect([c.activationFunction, activationOf(c.activationFunction)]).toEqual([name, act]);
      expect(configToJson(c).activation_function).toBe(name);
    }
    expect(() => activationOf("tanh")).toThrow(
      'activation_function "tanh" is not supported (gelu_new, gelu_pytorch_tanh, ',
    );
  });

  test("unsupported or invalid fields are named", () => {
    const f = { file: "cfg.json" };
    expect(() => parseConfig({ ...minimal, activation_function: "mish" }, f)).toThrow(
      'Cannot read cfg.json: field "activation_function" is "mish", expected one of "gelu_new", "gelu_pytorch_tanh", ' +
        '"gelu_fast", "gelu", "gelu_python", "relu", "silu", "swish", "quick_gelu"',
    );
    expect(() => parseConfig({ ...minimal, activation_function: "toString" }, f)).toThrow('"activation_function"');
    expect(() => parseConfig({ ...minimal, activation_function: 3 }, f)).toThrow('"activation_function" is 3');
    expect(parseConfig({ ...minimal, activation_function: "gelu_pytorch_tanh" }, f).activationFunction).toBe(
      "gelu_pytorch_tanh",
    );
    expect(() => parseConfig({ ...minimal, n_head: 4 }, f)).toThrow(
      "Cannot read cfg.json: n_embd (6) is not divisible by n_head (4)",
    );
    expect(() => parseConfig({ ...minimal, n_ctx: undefined }, f)).toThrow('missing field "n_positions" (or "n_ctx")');
    expect(() => parseConfig({ ...minimal, vocab_size: "10" }, f)).toThrow(
      'field "vocab_size" must be a positive integer',
    );
    expect(parseConfig({ ...minimal, n_inner: 7 }, f).nInner).toBe(7);
    expect(() => parseConfig({ ...minimal, n_inner: 0 }, f)).toThrow('field "n_inner" must be a positive integer');
    expect(() => parseConfig({ ...minimal, model_type: "bert" }, f)).toThrow('model_type is "bert", expected "gpt2"');
    expect(() => parseConfig([], f)).toThrow("Cannot read cfg.json: expected a JSON object");
  });

  test("token ids outside the vocabulary are unset with a warning", () => {
    const w: string[] = [];
    const c = parseConfig({ ...minimal, eos_token_id: 10, pad_token_id: 9 }, {
      file: "c.json",
      warn: (m) => w.push(m),
    });
    expect(c.eosTokenId).toBeUndefined();
    expect(c.padTokenId).toBe(9);
    expect(w).toEqual(["c.json: eos_token_id 10 is outside the vocabulary [0, 10); treating it as unset"]);
  });
});

describe("atomic writes", () => {
  tmpTest("atomicWriteFile replaces a file and leaves no temp files", async () => {
    const dir = await tempDir(), path = join(dir, "sub", "a.json");
    await atomicWriteFile(path, "one");
    await atomicWriteFile(path, new TextEncoder().encode("two"));
    expect(await readFile(path, "utf8")).toBe("two");
    expect(await readdir(join(dir, "sub"))).toEqual(["a.json"]);
  });

  tmpTest("atomicWriteDir rejects names with folders", async () => {
    const dir = join(await tempDir(), "d");
    await expect(atomicWriteDir(dir, { "../evil": "x" })).rejects.toThrow('file name "../evil" must be a plain name');
    await mkdir(dir);
    await atomicWriteDir(dir, { "config.json": "{}" }); // an empty existing dir may be replaced
    expect(await readdir(dir)).toEqual(["config.json"]);
  });

  tmpTest("isFile: a regular file or a link to one; not a folder, a missing path or a path under a file", async () => {
    const dir = await tempDir(), file = join(dir, "a.json");
    await writeFile(file, "{}");
    await symlink(file, join(dir, "link"));
    await symlink(join(dir, "gone"), join(dir, "dangling"));
    expect(await isFile(file)).toBe(true);
    expect(await isFile(join(dir, "link"))).toBe(true);
    expect(await isFile(dir)).toBe(false);
    expect(await isFile(join(dir, "gone"))).toBe(false);
    expect(await isFile(join(dir, "dangling"))).toBe(false);
    expect(await isFile(join(file, "config.json"))).toBe(false); // ENOTDIR
  });
});
