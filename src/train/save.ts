/**
 * What a training run saves and where: the SFT model directory (or a LoRA run's adapter directory) with the
 * tokenizer and sft_task.json, and the checks on `--out` and `--run-dir` made before any training starts.
 * @module
 */

import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import process from "node:process";
import { IM_END } from "../data/chatml.ts";
import { adapterDirFiles } from "../io/adapter_dir.ts";
import { atomicWriteDir } from "../io/atomic.ts";
import { modelDirFiles } from "../io/model_dir.ts";
import { configToJson } from "../model/config.ts";
import type { GPT2, HostTensor } from "../model/gpt2.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

/**
 * The files of the SFT model directory (`model` + tokenizer, eos = `<|im_end|>`, pad = `<|pad|>`), as
 * {@link modelDirFiles}; `where` names the directory in errors.
 */
export async function sftModelFiles(
  where: string,
  args: {
    model: GPT2;
    tokenizer: Tokenizer;
    extraFiles: Record<string, string>;
    /** The parameters when already read from the device (default: read them). */
    tensors?: Map<string, HostTensor>;
  },
): Promise<Record<string, string | Uint8Array>> {
  const { model, tokenizer } = args;
  const eos = tokenizer.tokenToId(IM_END);
  const config = {
    ...model.config,
    eosTokenId: eos ?? model.config.eosTokenId,
    padTokenId: tokenizer.padTokenId,
    bosTokenId: tokenizer.bosTokenId ?? model.config.bosTokenId,
  };
  const cfgJson = configToJson(config);
  return modelDirFiles({
    config,
    tensors: args.tensors ?? await model.toTensors(),
    generationConfig: {
      bos_token_id: config.bosTokenId,
      eos_token_id: config.eosTokenId,
      pad_token_id: config.padTokenId,
      transformers_version: cfgJson.transformers_version ?? "4.46.0",
    },
    extraFiles: args.extraFiles,
  }, where);
}

/**
 * The files a run saves: the SFT model directory ({@link sftModelFiles}) or, with a LoRA adapter attached, the
 * adapter's directory (peft's `adapter_config.json` and `adapter_model.safetensors`, `baseModel` as its base)
 * beside the same tokenizer files and sft_task.json. `tensors` are the {@link GPT2.trainable} tensors when
 * already read.
 */
export async function sftOutputFiles(
  where: string,
  args: {
    model: GPT2;
    tokenizer: Tokenizer;
    extraFiles: Record<string, string>;
    baseModel: string;
    tensors?: Map<string, HostTensor>;
  },
): Promise<Record<string, string | Uint8Array>> {
  const spec = args.model.lora;
  if (!spec) return sftModelFiles(where, args);
  return adapterDirFiles({
    spec,
    baseModel: args.baseModel,
    tensors: args.tensors ?? await args.model.adapterTensors(),
    extraFiles: { ...args.extraFiles, "README.md": adapterReadme(args.baseModel) },
  }, where);
}

/** The adapter directory's README: what it is and how Python loads it. */
function adapterReadme(base: string): string {
  return `# LoRA adapter

A peft LoRA adapter for GPT-2 \`${base}\`, fine-tuned with gpt2-sft-webgpu, with the SFT tokenizer it was trained
with (\`<|im_start|>\`, \`<|im_end|>\`, \`<|pad|>\`).

\`\`\`python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("path/to/this/dir")
base = AutoModelForCausalLM.from_pretrained("${base}")
base.resize_token_embeddings(len(tok), mean_resizing=False)  # the rows the adapter trains come with it
model = PeftModel.from_pretrained(base, "path/to/this/dir")
\`\`\`
`;
}

/** Save `model` + tokenizer as an HF model dir with eos = `<|im_end|>` and pad = `<|pad|>`, atomically. */
export async function saveSftModel(
  dir: string,
  args: { model: GPT2; tokenizer: Tokenizer; extraFiles: Record<string, string> },
): Promise<void> {
  await atomicWriteDir(dir, await sftModelFiles(dir, args));
}

function inside(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/** The names a run writes in its `--run-dir` (a `--out` there would be overwritten or deleted). */
const RUN_DIR_NAMES = /^(checkpoint(\.old|\.tmp-.*)?|metrics\.jsonl|loss_curve\.(png|svg)|\.lock)$/;

/**
 * The checks on `--out` and `--run-dir` that would otherwise fail only after training: `--run-dir` not inside
 * `--out` (the final save replaces the whole of `--out`: checkpoints and metrics would go with it), `--out` not
 * the run directory or one of the names the run writes there (`checkpoint`, `metrics.jsonl`, …; a `--out`
 * beside them, as the demo's `runs/demo/model`, is fine), and `--out` absent, empty or a model directory this
 * tool wrote (it has `sft_task.json`), on a file system that takes writes.
 */
export async function checkOutputDirs(outDir: string, runDir: string): Promise<void> {
  const out = resolve(outDir), run = resolve(runDir);
  const nested = () =>
    new Error(
      `Invalid --out ${outDir} with --run-dir ${runDir}: ` +
        (inside(run, out)
          ? "the run directory is inside --out, and saving the model replaces all of --out (the checkpoint and " +
            "metrics included)"
          : "--out is where the run keeps its checkpoint, metrics or loss curve") +
        "; choose separate directories",
    );
  if (inside(run, out)) throw nested();
  if (inside(out, run) && RUN_DIR_NAMES.test(relative(run, out).split(/[\\/]/)[0]!)) throw nested();
  let entries: string[] | undefined;
  try {
    const st = await stat(out);
    if (!st.isDirectory()) throw new Error(`Invalid --out ${outDir}: it exists and is not a directory`);
    entries = await readdir(out);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOTDIR") throw new Error(`Invalid --out ${outDir}: a part of its path is a file, not a directory`);
    if (code !== "ENOENT") throw e;
  }
  if (entries && entries.length > 0 && !entries.includes("sft_task.json")) {
    throw new Error(
      `Invalid --out ${outDir}: it exists and is not a model directory this tool wrote (no sft_task.json), and ` +
        "saving replaces the whole directory; choose another --out, or empty it",
    );
  }
  // the save writes a sibling of --out and renames it into place: that must be possible
  const parent = dirname(out);
  const probe = join(parent, `.${basename(out)}.probe-${process.pid}`);
  try {
    await mkdir(parent, { recursive: true });
    await mkdir(probe);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new Error(
      `Invalid --out ${outDir}: cannot write in ${parent} (${code ?? (e instanceof Error ? e.message : e)})`,
    );
  } finally {
    await rm(probe, { recursive: true, force: true }).catch(() => {});
  }
}
