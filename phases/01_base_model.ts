/**
 * Phase 1 of the notebook, "Part 1：理解基础模型与对话模型": load the Chinese GPT-2 base model, count its
 * parameters and let it continue the notebook's three test prompts (sampling, as `generate_text`), to
 * show that a base model merely continues text. Run: `deno run -A phases/01_base_model.ts [--model DIR]`.
 * @module
 */

import process from "node:process";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import { numberFlag, parseFlags, runMain } from "../src/cli/args.ts";
import { pyStrip } from "../src/eval/metrics.ts";
import { DEFAULT_MODEL } from "../src/io/hub.ts";
import { readSettings } from "../src/env.ts";
import { generate, type GenerateOptions } from "../src/model/generate.ts";
import type { GPT2 } from "../src/model/gpt2.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import type { Tokenizer } from "../src/tokenizer/types.ts";

const HELP = `Usage: deno run -A phases/01_base_model.ts [options]

The notebook's Part 1: loads the base model (without the SFT tokens), prints its parameter count and
lets it continue three prompts with the notebook's generate_text settings (sampling, temperature 0.7,
top_p 0.9, repetition penalty 1.1, no-repeat n-gram 3, 30 new tokens).

  --model ID|DIR        hub id, id@revision or local dir (default ${DEFAULT_MODEL});
                        offline: tests/fixtures/tiny-gpt2-zh/model-bin (a tiny random model)
  --backend NAME        auto | cpu | webgpu (default auto)
  --seed N              sampling seed (default 42)
  --max-new-tokens N    tokens to generate per prompt (default 30)
  --offline             use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)
  -h, --help            this text
`;

/** The notebook's `test_prompts`. */
export const TEST_PROMPTS: readonly string[] = [
  "What is machine learning?",
  "Question: What is 2+2?\nAnswer:",
  "User: Hello!\nAssistant:",
];

/** The notebook's introduction (goal, what SFT is), printed before Part 1. */
export const INTRO = `# Ch8 | SFT（Supervised Fine-Tuning）：让模型学会遵循指令

目标：将基础模型转变为能够遵循指令的对话模型

内容
1. SFT 原理：从文本续写到对话
2. ChatML 格式：标准对话格式
3. Loss Masking：仅在 assistant 回复上计算损失
4. 真实训练：对 中文 GPT-2 进行指令微调

什么是 SFT？
SFT（Supervised Fine-Tuning）= 教模型“如何进行对话”

|          | 基础模型        | 对话模型（SFT 后） |
|:---------|:----------------|:-------------------|
| 训练目标 | 预测下一个 token | 学习对话格式       |
| 输入     | 任意文本        | 结构化对话         |
| 输出     | 文本续写        | 有帮助的回复       |
| 使用场景 | 文本补全        | 聊天、问答、指令   |
`;

/** The remark after the base model's outputs. */
export const REMARK = "如你所见，基础模型并不理解指令格式——它只会沿着输入的风格继续生成文本。";

/**
 * The notebook's `generate_text`: the prompt tokenized with special tokens (`[CLS] … [SEP]`, as
 * `tokenizer(prompt)` does), HF-style sampling, the new ids decoded without special tokens and stripped.
 */
export async function generateText(
  model: GPT2,
  tokenizer: Tokenizer,
  prompt: string,
  opts: { maxNewTokens?: number; temperature?: number; doSample?: boolean; topP?: number; seed?: number } = {},
): Promise<string> {
  const { ids } = tokenizer.encode(prompt);
  const eos = model.config.eosTokenId;
  const gen: GenerateOptions = {
    maxNewTokens: opts.maxNewTokens ?? 50,
    doSample: opts.doSample ?? true,
    temperature: opts.temperature ?? 0.7,
    topP: opts.topP ?? 0.9,
    repetitionPenalty: 1.1,
    noRepeatNgramSize: 3,
    seed: opts.seed ?? 0,
    // the config's eos, as HF generate uses it; the real model's 50256 lies outside its vocab and never stops it
    ...(eos !== undefined && eos < model.config.vocabSize ? { eosTokenId: eos } : {}),
  };
  const newIds = await generate(model, ids, gen);
  return pyStrip(tokenizer.decode(newIds, { skipSpecialTokens: true }));
}

/** Run the phase; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      backend: { type: "string" },
      seed: { type: "string" },
      "max-new-tokens": { type: "string" },
      offline: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const seed = numberFlag("seed", v.seed, 42, { integer: true, min: 0 });
  const maxNewTokens = numberFlag("max-new-tokens", v["max-new-tokens"], 30, { integer: true, min: 1 });
  const env = readSettings();
  const be = await createBackend(parseBackendName(v.backend), env.backend);
  try {
    print(INTRO);
    print("## Part 1：理解基础模型与对话模型\n");
    print(`Using device: ${be.description}`);
    print(`Loading ${v.model}...`);
    // the base model as the notebook loads it: no SFT tokens yet (those come in Part 5)
    const { model, tokenizer } = await loadModelAndTokenizer(v.model!, be, {
      prepare: false,
      hub: { env: env.hub, offline: v.offline || undefined },
    });
    try {
      print(`Model loaded: ${model.numParams.toLocaleString("en-US")} parameters`);
      print("=".repeat(60));
      print("BASE MODEL BEHAVIOR (before SFT)");
      print("=".repeat(60));
      for (const [i, prompt] of TEST_PROMPTS.entries()) {
        print(`\nPrompt: ${prompt}`);
        const out = await generateText(model, tokenizer, prompt, { maxNewTokens, seed: seed + i });
        print(`Output: ${out}`);
        print("-".repeat(40));
      }
      print(`\n${REMARK}`);
    } finally {
      model.dispose();
    }
  } finally {
    be.dispose();
  }
  return 0;
}

if (import.meta.main) runMain("phases/01_base_model", () => main(process.argv.slice(2)));
