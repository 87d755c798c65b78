/**
 * Phase 6 of the notebook, "Part 6：评估微调后的模型": the base model and the SFT model on the held-out test
 * set (per-category and overall accuracy, three samples, base vs SFT on the first five items), then the
 * notebook's summary (总结). The work is `runEvaluation` (src/eval/run.ts), as `eval.ts` does.
 * Run: `deno run -A phases/06_evaluate.ts [--sft DIR] [--model DIR] [--backend webgpu]`.
 * @module
 */

import process from "node:process";
import { runMain } from "../src/cli/args.ts";
import { evalMain } from "../src/cli/eval.ts";

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

/** Run the phase (the flags are eval.ts's); `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const heading = [
    "## Part 6：评估微调后的模型\n",
    "在留出的测试集上比较基础模型与 SFT 模型：分类任务按标签的平均对数概率打分（USE_LM_CLASSIFIER），",
    "其他任务用贪心解码生成回答，再按 text / json / numeric 指标判断是否正确。\n",
  ];
  const code = await evalMain(argv, print, { heading, progress: "lines" });
  if (!argv.includes("--help") && !argv.includes("-h")) print(`\n${SUMMARY}`);
  return code;
}

if (import.meta.main) runMain("phases/06_evaluate", () => main(process.argv.slice(2)));
