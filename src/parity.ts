/**
 * The parity check: load a fixture dir written by `make_fixture.py` (PyTorch + transformers in float64)
 * and compare every number this implementation computes against it, on one backend. See
 * `tests/fixtures/README.md` for the tensors and the tolerances used here.
 *
 * Usage: `deno task parity <fixture-dir> [--backend auto|cpu|webgpu] [--json]`
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import type { Backend } from "./backend/backend.ts";
import { createBackend, parseBackendName } from "./backend/mod.ts";
import { loadModelDir } from "./io/model_dir.ts";
import { readSafetensors } from "./io/safetensors.ts";
import { type Batch, GPT2 } from "./model/gpt2.ts";
import { generate } from "./model/generate.ts";
import { scoreLabels } from "./eval/classify.ts";
import { AdamW } from "./train/adamw.ts";
import { loadTokenizer } from "./tokenizer/load.ts";
import type { Tokenizer } from "./tokenizer/types.ts";
import { exists } from "./io/atomic.ts";
import { compareArrays, maxAbs } from "./testing/compare.ts";
import { parseFlags } from "./cli/args.ts";
import { backendSettings } from "./env.ts";

/** One line of the parity table. */
export interface ParityCheck {
  name: string;
  max_abs_err: number;
  tol: number;
  ok: boolean;
  note?: string;
}

/** The whole result. */
export interface ParityResult {
  ok: boolean;
  backend: string;
  /** Whose tolerances applied ({@link PARITY_TOLERANCES}). */
  precision: keyof typeof PARITY_TOLERANCES;
  checks: ParityCheck[];
}

interface RefJson {
  loss: number;
  loss_eos: number;
  grad_norm: number;
  losses_step2_3: number[];
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number; clip_grad_norm: number };
  param_names: string[];
  generation: { prompt: string; prompt_ids: number[]; new_ids: number[]; settings: Record<string, number | boolean> }[];
  label_scores: { prompt: string; prompt_ids: number[]; label_mean_logprob: Record<string, number> }[];
  tokenization: { text: string; ids: number[] }[];
  tokenization_base?: { text: string; ids: number[] }[];
  labels: string[];
}

type RefTensors = Map<string, { shape: number[]; data: Float32Array | Int32Array }>;

function tensor(ref: RefTensors, name: string): Float32Array | Int32Array {
  const t = ref.get(name);
  if (!t) throw new Error(`Cannot run parity: reference.safetensors has no tensor "${name}"`);
  return t.data;
}

/**
 * The tolerances of the checks. "f32" is the fixtures README's; "f16" is what the opt-in f16 matmul
 * (`--matmul large-f16`) claims: inputs of every product rounded to 11 significant bits, and gradients
 * below f16's smallest normal (6e−5) lose digits (no loss scaling), so the gradient checks are 50× looser
 * and AdamW's first steps (which divide by √v) flip the sign of many more tiny updates.
 */
export const PARITY_TOLERANCES = {
  f32: {
    logits: 2e-4,
    lossRel: 1e-5,
    grad: 1e-3,
    gradNormRel: 1e-4,
    paramTight: 2e-5,
    paramTightFraction: 0.001,
    paramLoose: 2e-3,
    lossAfterRel: 1e-4,
    labelScores: 1e-4,
  },
  f16: {
    logits: 2e-3,
    lossRel: 2e-4,
    grad: 5e-2,
    gradNormRel: 1e-2,
    paramTight: 2e-4,
    paramTightFraction: 0.25,
    paramLoose: 2e-2,
    lossAfterRel: 1e-3,
    labelScores: 1e-3,
  },
} as const;

/** Run every check of the fixture at `fixtureDir` on `be`, with the tolerances of `precision` (default f32). */
export async function runParity(
  fixtureDir: string,
  be: Backend,
  precision: keyof typeof PARITY_TOLERANCES = "f32",
): Promise<ParityResult> {
  const tol = PARITY_TOLERANCES[precision];
  const checks: ParityCheck[] = [];
  const add = (name: string, maxErr: number, tol: number, ok: boolean, note?: string) =>
    checks.push({ name, max_abs_err: maxErr, tol, ok, ...(note ? { note } : {}) });

  const refPath = join(fixtureDir, "reference.json");
  let refText: string;
  try {
    refText = await readFile(refPath, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code !== "ENOENT" && (e as { code?: string }).code !== "ENOTDIR") throw e;
    throw new Error(
      `Cannot check parity: ${fixtureDir} is not a fixture directory (no ${refPath}); a fixture holds ` +
        "reference.json, reference.safetensors and model/, as make_fixture.py writes them",
    );
  }
  const ref = JSON.parse(refText) as RefJson;
  const tensorsPath = join(fixtureDir, "reference.safetensors");
  const refT: RefTensors = readSafetensors(new Uint8Array(await readFile(tensorsPath)), tensorsPath);
  const loaded = await loadModelDir(join(fixtureDir, "model"));
  const cfg = loaded.config;

  const ids = tensor(refT, "input_ids") as Int32Array;
  const mask = tensor(refT, "attention_mask") as Int32Array;
  const labels = tensor(refT, "labels") as Int32Array;
  const labelsEos = tensor(refT, "labels_eos") as Int32Array;
  const [B, T] = refT.get("input_ids")!.shape as [number, number];
  const V = cfg.vocabSize;
  const batch: Batch = { B, T, inputIds: ids, attentionMask: mask, labels };

  let model = GPT2.fromTensors(be, cfg, loaded.tensors);
  try {
    // 1. logits where attention_mask == 1 (|err| ≤ 2e-4)
    {
      const idsBuf = be.upload(ids), maskBuf = be.upload(mask);
      const logits = model.forward({ ids: idsBuf, mask: maskBuf, B, T });
      const got = await logits.read();
      be.free(logits.buf);
      be.free(idsBuf);
      be.free(maskBuf);
      const r = compareArrays(got, tensor(refT, "logits"), {
        atol: tol.logits,
        where: (i) => mask[Math.floor(i / V)] === 1,
      });
      add("logits", r.maxAbsErr, tol.logits, r.ok);
    }
    // 2. loss and loss_eos (relative error ≤ 1e-5)
    const lossCheck = async (name: string, lab: Int32Array, expected: number, backward: boolean) => {
      const { loss } = model.loss({ ...batch, labels: lab }, { backward });
      const got = (await be.read(loss))[0]!;
      be.free(loss);
      const err = Math.abs(got - expected);
      add(
        name,
        err,
        tol.lossRel * Math.abs(expected),
        err <= tol.lossRel * Math.abs(expected),
        `got ${got.toFixed(7)}, expected ${expected.toFixed(7)}`,
      );
    };
    await lossCheck("loss_eos", labelsEos, ref.loss_eos, false);
    {
      // the same loss with the LM head over every position (the training path runs it only where a label is)
      const { loss } = model.loss({ ...batch, labels: labelsEos }, { allPositions: true });
      const got = (await be.read(loss))[0]!;
      be.free(loss);
      const err = Math.abs(got - ref.loss_eos);
      const t = tol.lossRel * ref.loss_eos;
      add("loss_eos (head at all positions)", err, t, err <= t);
    }
    model.zeroGrad();
    await lossCheck("loss", labels, ref.loss, true);

    // 3. every gradient (max abs err ≤ 1e-3 × the tensor's max abs value)
    for (const name of ref.param_names) {
      if (name === "lm_head.weight") continue; // tied: its gradient is inside transformer.wte.weight's
      const t = model.param(name);
      const got = t.grad ? ((await be.read(t.grad)) as Float32Array) : new Float32Array(t.size);
      const exp = tensor(refT, `grad.${name}`);
      const atol = tol.grad * maxAbs(exp);
      const r = compareArrays(got, exp, { atol });
      add(`grad.${name}`, r.maxAbsErr, atol, r.ok);
    }

    // 4. grad norm, then clip + AdamW: step 1, and steps 2–3 on the same batch
    const a = ref.adamw;
    const opt = new AdamW(be, model.params, {
      lr: a.lr,
      beta1: a.betas[0],
      beta2: a.betas[1],
      eps: a.eps,
      weightDecay: a.weight_decay,
      maxGradNorm: a.clip_grad_norm,
    }, model);
    opt.step(a.lr);
    {
      const got = (await be.read(opt.gradNorm))[0]!;
      const err = Math.abs(got - ref.grad_norm);
      // a sum of squares over every gradient in float32: relative 1e-4
      add("grad_norm", err, tol.gradNormRel * ref.grad_norm, err <= tol.gradNormRel * ref.grad_norm);
    }
    const paramCheck = async (prefix: string) => {
      let worst = 0, allOk = true;
      const notes: string[] = [];
      for (const name of ref.param_names) {
        if (name === "lm_head.weight") continue;
        const got = await model.param(name).read();
        const exp = tensor(refT, `${prefix}.${name}`);
        // f32: ≤ 2e-5 for ≥ 99.9 % of the elements and ≤ 2e-3 for all (AdamW's first steps amplify sign
        // flips of near-zero gradients: the fixtures README); f16 flips many more (14 % of one tensor measured)
        const tight = compareArrays(got, exp, { atol: tol.paramTight });
        const loose = compareArrays(got, exp, { atol: tol.paramLoose });
        const ok = tight.bad <= tol.paramTightFraction * got.length && loose.ok;
        worst = Math.max(worst, loose.maxAbsErr);
        if (!ok) {
          allOk = false;
          notes.push(
            `${name}: ${tight.bad}/${got.length} over ${tol.paramTight}, max ${loose.maxAbsErr.toExponential(2)}`,
          );
        }
      }
      add(`${prefix} params`, worst, tol.paramLoose, allOk, notes.slice(0, 3).join("; ") || undefined);
    };
    await paramCheck("step1");
    for (let s = 0; s < 2; s++) {
      model.zeroGrad();
      const { loss } = model.loss(batch, { backward: true });
      const got = (await be.read(loss))[0]!;
      be.free(loss);
      const exp = ref.losses_step2_3[s]!;
      const err = Math.abs(got - exp);
      // after AdamW steps the weights differ by up to 2e-5 (above), so the loss gets a looser 1e-4 relative
      add(`loss before step ${s + 2}`, err, tol.lossAfterRel * exp, err <= tol.lossAfterRel * exp);
      opt.step(a.lr);
    }
    await paramCheck("step3");
    opt.dispose();
    model.zeroGrad();

    // 5. generation and label scores use the fixture's own step-3 weights, so that they test the
    //    inference path and not the accumulated float32 drift of three optimizer steps.
    const step3 = new Map(loaded.tensors);
    for (const name of step3.keys()) {
      step3.set(name, { shape: loaded.tensors.get(name)!.shape, data: tensor(refT, `step3.${name}`) as Float32Array });
    }
    model.dispose();
    model = GPT2.fromTensors(be, cfg, step3);
    for (const [i, g] of ref.generation.entries()) {
      const s = g.settings;
      const got = await generate(model, g.prompt_ids, {
        maxNewTokens: Number(s.max_new_tokens),
        doSample: false,
        repetitionPenalty: Number(s.repetition_penalty),
        noRepeatNgramSize: Number(s.no_repeat_ngram_size),
        eosTokenId: Number(s.eos_token_id),
      });
      const same = got.length === g.new_ids.length && got.every((x, j) => x === g.new_ids[j]);
      add(`generation[${i}] ids`, same ? 0 : 1, 0, same, same ? undefined : `got [${got}], expected [${g.new_ids}]`);
    }
    const tok = await loadTokenizer(join(fixtureDir, "model"));
    for (const [i, s] of ref.label_scores.entries()) {
      const labelIds = ref.labels.map((l) => tok.encode(l, { addSpecialTokens: false }).ids);
      const got = await scoreLabels(model, s.prompt_ids, labelIds);
      const exp = ref.labels.map((l) => s.label_mean_logprob[l]!);
      const r = compareArrays(got, exp, { atol: tol.labelScores });
      add(`label_scores[${i}]`, r.maxAbsErr, tol.labelScores, r.ok);
    }

    // 6. tokenization ids: the SFT tokenizer of model/, and where the fixture has model-bin/ (the base model as
    //    the hub ships it) its tokenizer before and after the SFT additions
    const tokCheck = (name: string, t: Tokenizer, cases: { text: string; ids: number[] }[]) => {
      const bad = cases.filter((c) => {
        const got = t.encode(c.text).ids;
        return got.length !== c.ids.length || got.some((x, j) => x !== c.ids[j]);
      });
      add(
        name,
        bad.length,
        0,
        bad.length === 0,
        bad.length ? `${bad.length}/${cases.length} differ, first: ${JSON.stringify(bad[0]!.text)}` : undefined,
      );
    };
    tokCheck("tokenization (model/)", tok, ref.tokenization);
    if (ref.tokenization_base?.length && (await exists(join(fixtureDir, "model-bin", "config.json")))) {
      const base = await loadTokenizer(join(fixtureDir, "model-bin"));
      tokCheck("tokenization_base (model-bin/)", base, ref.tokenization_base);
      base.prepareForSft();
      tokCheck("tokenization (model-bin/ + prepareForSft)", base, ref.tokenization);
    }
  } finally {
    model.dispose();
  }
  return { ok: checks.every((c) => c.ok), backend: be.name, precision, checks };
}

/** Render the table. */
export function formatParityTable(r: ParityResult): string {
  const w = Math.max(...r.checks.map((c) => c.name.length), 5);
  const lines = [`${"check".padEnd(w)}  ${"max abs err".padStart(12)}  ${"tolerance".padStart(10)}  ok`];
  for (const c of r.checks) {
    lines.push(
      `${c.name.padEnd(w)}  ${c.max_abs_err.toExponential(3).padStart(12)}  ${c.tol.toExponential(2).padStart(10)}  ${
        c.ok ? "ok" : "FAIL"
      }${c.note && !c.ok ? `  ${c.note}` : ""}`,
    );
  }
  const failed = r.checks.filter((c) => !c.ok).length;
  lines.push(
    `${r.ok ? "PASS" : "FAIL"}: ${
      r.checks.length - failed
    }/${r.checks.length} checks within ${r.precision} tolerance on ${r.backend}`,
  );
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags({
    args: argv,
    options: {
      backend: { type: "string", default: "auto" },
      matmul: { type: "string" },
      attention: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  if (values.help || positionals.length !== 1) {
    console.log(
      `Usage: deno task parity <fixture-dir> [--backend auto|cpu|webgpu] [--matmul KERNEL] [--attention matmul|rows|flash] [--json]

Compares logits, losses, every gradient, AdamW steps, greedy generation, label scores and tokenization
against a PyTorch fixture (see tests/fixtures/README.md). Exits 1 when a check is out of tolerance.
--matmul (WebGPU only): tiled, large, tune, large-f16, naive; "large-f16" is checked against the f16
tolerances (PARITY_TOLERANCES in src/parity.ts), every other kernel against the fixture's f32 ones.
--attention (WebGPU only): matmul (the default: batched products around a softmax), rows (a workgroup per
query row) or flash (online softmax, probabilities recomputed).`,
    );
    return values.help ? 0 : 2;
  }
  const backendName = parseBackendName(values.backend);
  const env = backendSettings();
  const { parseAttentionKernel, parseMatmulKernel, WebGpuBackend } = await import("./backend/webgpu.ts"); // loads no GPU library
  let be: Backend;
  if (values.matmul !== undefined || values.attention !== undefined) {
    if (backendName === "cpu") {
      throw new Error("--matmul and --attention pick WebGPU kernels; they need --backend webgpu or auto");
    }
    be = await WebGpuBackend.create({
      ...env.webgpu,
      profile: env.profile,
      ...(values.matmul === undefined ? {} : { matmul: parseMatmulKernel(values.matmul, "--matmul") }),
      ...(values.attention === undefined ? {} : { attention: parseAttentionKernel(values.attention, "--attention") }),
    });
  } else be = await createBackend(backendName, env);
  const kernel = be instanceof WebGpuBackend ? be.matmulKernel : undefined;
  try {
    const r = await runParity(positionals[0]!, be, kernel === "large-f16" ? "f16" : "f32");
    if (values.json) {
      console.log(formatParityTable(r));
      console.log(JSON.stringify(r));
    } else console.log(`backend: ${be.description}\n${formatParityTable(r)}`);
    return r.ok ? 0 : 1;
  } finally {
    be.dispose();
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    console.error(`parity: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
