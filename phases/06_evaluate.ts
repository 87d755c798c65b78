/**
 * Phase 6 of the notebook, "Part 6：评估微调后的模型": the base model and the SFT model on the held-out test
 * set (per-category and overall accuracy, three samples, base vs SFT on the first five items), then the
 * notebook's summary (总结). The work is `runEvaluation` (src/eval/run.ts), as `eval.ts` does.
 * Run: `deno run -A phases/06_evaluate.ts [--sft DIR] [--model DIR] [--backend webgpu]`.
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import { choiceFlag, numberFlag, runMain } from "../src/cli/args.ts";
import { colorEnabled, renderConsole } from "../src/eval/report.ts";
import { EVAL_TASKS, NOTEBOOK_EVAL, planEvaluation, runEvaluation } from "../src/eval/run.ts";

const HELP = `Usage: deno run -A phases/06_evaluate.ts [options]

The notebook's Part 6: evaluates the SFT model (written by phases/05_train.ts or deno task train) and the
base model on the held-out test set, as eval.ts does, then prints the notebook's summary.

  --sft DIR             the SFT model directory (default models/ch8_sft_gpt2)
  --model ID|DIR        the base model (default: model_name in the SFT dir's sft_task.json)
  --task NAME           ${EVAL_TASKS.join(" | ")} (default: sft_task.json's task)
  --plain               json_extraction: score "姓名：…；邮箱：…；订单号：…" answers
  --data-dir DIR        the task's JSONL files (default data; a missing test file is generated)
  --max-samples N|all   the first N test records (default ${NOTEBOOK_EVAL.maxSamples}, EVAL_MAX_SAMPLES)
  --no-base             skip the base model (EVAL_RUN_BASE = False)
  --max-new-tokens N    generation tasks (default ${NOTEBOOK_EVAL.maxNewTokens}); greedy unless --do-sample
  --do-sample           sample (temperature 0.7, top_p 0.9 unless --temperature / --top-p)
  --temperature X       --top-p X        --seed N (sampling seed, default 0)
  --backend NAME        auto | cpu | webgpu (default auto)
  --report PATH         write PATH.md and PATH.json (default runs/eval/report); --no-report: none
  --no-color            no colours (also when NO_COLOR is set)
  --offline             use only the local Hugging Face cache for the base model
  -h, --help            this text
`;

/** The notebook's closing section (总结, 关键要点, 练习). */
export const SUMMARY = `## 总结

1. SFT 的作用：将只会文本续写的基础模型训练为能遵循指令、进行对话的模型
2. ChatML 格式：用角色标记（<|im_start|>, <|im_end|>）表示对话的标准方式
3. Loss Masking：关键技术——只在 assistant 回复上计算 loss（在 labels 中用 -100 屏蔽）
4. 真实训练：我们实际微调了 GPT-2，并看到它学会以对话形式回答问题

### 关键要点

| 维度 | 说明                                  |
|------|---------------------------------------|
| 数据 | 高质量的（instruction, response）样本对 |
| 格式 | ChatML 或类似的结构化格式             |
| Loss | 仅对 assistant tokens 计算（-100 mask） |
| 结果 | 基础模型 → 对话模型                   |

## 练习

1. 扩充数据集：加入更多样的指令类型（翻译、摘要等）
2. 多轮训练：确保模型能处理多轮对话
3. 评估指标：实现 ROUGE 或其他指标评估回复质量
4. 超参数调优：尝试学习率、batch size、epochs 等`;

/** Run the phase; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      sft: { type: "string", default: "models/ch8_sft_gpt2" },
      model: { type: "string" },
      task: { type: "string" },
      plain: { type: "boolean" },
      "data-dir": { type: "string", default: "data" },
      "max-samples": { type: "string" },
      "no-base": { type: "boolean", default: false },
      "max-new-tokens": { type: "string" },
      "do-sample": { type: "boolean", default: false },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      backend: { type: "string" },
      report: { type: "string", default: "runs/eval/report" },
      "no-report": { type: "boolean", default: false },
      "no-color": { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const backendName = parseBackendName(v.backend);
  const task = v.task === undefined ? undefined : choiceFlag("task", v.task, EVAL_TASKS, "classification");
  const ms = v["max-samples"];
  const maxSamples = ms === undefined
    ? NOTEBOOK_EVAL.maxSamples
    : ms.trim().toLowerCase() === "all"
    ? null
    : numberFlag("max-samples", ms, 0, { integer: true, min: 0 }) || null;
  const opts = {
    sftDir: v.sft!,
    model: v.model,
    task,
    plain: v.plain,
    dataDir: v["data-dir"]!,
    maxSamples,
    runBase: !v["no-base"],
    decoding: {
      maxNewTokens: numberFlag("max-new-tokens", v["max-new-tokens"], NOTEBOOK_EVAL.maxNewTokens, {
        integer: true,
        min: 1,
      }),
      doSample: v["do-sample"]!,
      temperature: v.temperature === undefined ? undefined : numberFlag("temperature", v.temperature, 0, { min: 0 }),
      topP: v["top-p"] === undefined ? undefined : numberFlag("top-p", v["top-p"], 1, { min: 0, max: 1 }),
      seed: numberFlag("seed", v.seed, 0, { integer: true, min: 0 }),
    },
    reportBase: v["no-report"] ? undefined : v.report!,
    hub: { offline: v.offline || undefined },
    progress: "lines" as const,
  };

  print("## Part 6：评估微调后的模型\n");
  print("在留出的测试集上比较基础模型与 SFT 模型：分类任务按标签的平均对数概率打分（USE_LM_CLASSIFIER），");
  print("其他任务用贪心解码生成回答，再按 text / json / numeric 指标判断是否正确。\n");
  // the options and the test data are checked before any model is loaded
  const plan = await planEvaluation(opts, print);
  const be = await createBackend(backendName);
  print(`Using device: ${be.description}`);
  try {
    const result = await runEvaluation({ ...opts, plan, backend: be, print });
    print("");
    print(renderConsole(result.report, { color: !v["no-color"] && colorEnabled() }));
    if (result.paths) print(`\nReport: ${result.paths.md} and ${result.paths.json}`);
  } finally {
    be.dispose();
  }
  print(`\n${SUMMARY}`);
  return 0;
}

if (import.meta.main) runMain("phases/06_evaluate", () => main(process.argv.slice(2)));
