/**
 * Phase 4 of the notebook, "Part 4：Loss Masking": the SFT tokenizer (the notebook's added tokens), the
 * masked dataset (`SFTDataset`: labels −100 outside the assistant's reply) and `visualize_loss_masking` of
 * the first training example. Only the tokenizer is loaded, no weights.
 * Run: `deno run -A phases/04_loss_masking.ts [--model DIR] [--mask assistant+eos] [--html out.html]`.
 * @module
 */

import process from "node:process";
import { choiceFlag, numberFlag, parseFlags, runMain } from "../src/cli/args.ts";
import { loadSftTokenizer, writeMaskingHtml } from "../src/cli/show_masking.ts";
import { buildMaskingView, renderMaskingConsole } from "../src/data/masking_view.ts";
import { buildSftDataset, MASK_MODES } from "../src/data/sft_dataset.ts";
import { toMessages } from "../src/data/synth.ts";
import { colorEnabled } from "../src/eval/report.ts";
import { hubEnvironment, outputSettings, readVariables } from "../src/env.ts";
import { DEFAULT_MODEL } from "../src/io/hub.ts";
import { tokenizerSanityLines } from "../src/tokenizer/sanity.ts";
import { loadTaskRecords, TASKS } from "../src/train/run.ts";

const HELP = `Usage: deno run -A phases/04_loss_masking.ts [options]

The notebook's Part 4: adds the SFT tokens to the tokenizer, builds the masked SFT dataset and shows which
tokens of the first training example carry loss (green) and which are masked with -100 (red).

  --model ID|DIR        tokenizer source (default ${DEFAULT_MODEL}); offline:
                        tests/fixtures/tiny-gpt2-zh/model-bin (its tiny vocabulary lacks many characters)
  --task NAME           classification | json_extraction (default classification)
  --plain               json_extraction: the "姓名：…；邮箱：…；订单号：…" form
  --data-dir DIR        JSONL files, generated when missing (default data)
  --mask MODE           assistant | assistant+eos | none (default assistant, the notebook's mask_prompt=True;
                        deno task train uses assistant+eos, which also supervises the closing <|im_end|>)
  --max-length N        truncate to N tokens (default 256)
  --limit N             process the first N records of each split (default 1; 0: all, as the notebook)
  --index N             which example to show (default 0)
  --html FILE           also write the view of every token as an HTML page
  --no-color            plain text (supervised tokens as «token»); also when NO_COLOR is set
  --offline             use only the local Hugging Face cache
  --backend NAME        accepted for uniformity with the other phases, ignored (no model runs here)
  -h, --help            this text
`;

/** Run the phase; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      task: { type: "string" },
      plain: { type: "boolean", default: false },
      "data-dir": { type: "string", default: "data" },
      mask: { type: "string" },
      "max-length": { type: "string" },
      limit: { type: "string" },
      index: { type: "string" },
      html: { type: "string" },
      "no-color": { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const task = choiceFlag("task", v.task, TASKS, "classification");
  const plain = task === "json_extraction" && v.plain;
  const mask = choiceFlag("mask", v.mask, MASK_MODES, "assistant");
  const maxLength = numberFlag("max-length", v["max-length"], 256, { integer: true, min: 3 });
  const limit = numberFlag("limit", v.limit, 1, { integer: true, min: 0 });
  const index = numberFlag("index", v.index, 0, { integer: true, min: 0 });
  const vars = readVariables(); // no backend here: only the output and hub variables
  const color = !v["no-color"] && colorEnabled(process.stdout, outputSettings(vars).noColor);

  print("## Part 4：Loss Masking\n");
  print("SFT 的关键点：只在 assistant 回复上计算 loss，而不是在 user 输入上计算。");
  print("（labels 中用 -100 屏蔽 user/system 的 token；只有 assistant 的回复参与 loss。）\n");

  print("Adding special tokens...");
  const { tokenizer, added } = await loadSftTokenizer(v.model!, {
    env: hubEnvironment(vars),
    offline: v.offline || undefined,
  });
  print(`Added ${added} total tokens (special + ASCII)`);
  for (const line of tokenizerSanityLines(tokenizer)) print(line);
  print(`Vocabulary size: ${tokenizer.vocabSize}`);

  print("Creating SFT dataset...");
  if (mask === "none") {
    print(
      "Warning: mask_prompt=False will train on user tokens; outputs may echo prompts and evaluation will be noisy.",
    );
  }
  const take = (n: number) => (limit === 0 ? n : Math.min(n, Math.max(limit, index + 1)));
  const train = await loadTaskRecords(task, v["data-dir"]!, "train", { plain, print });
  const val = await loadTaskRecords(task, v["data-dir"]!, "val", { plain, print });
  const opts = { maxLength, mask };
  const conv = (r: (typeof train)[number]) => toMessages(r, { plain });
  const trainDs = buildSftDataset(train.slice(0, take(train.length)).map(conv), tokenizer, opts);
  print(`Processed ${trainDs.examples.length}/${trainDs.total} examples`);
  const valDs = buildSftDataset(val.slice(0, take(val.length)).map(conv), tokenizer, opts);
  print(`Processed ${valDs.examples.length}/${valDs.total} examples`);
  print(`Train dataset: ${trainDs.examples.length}`);
  print(`Val dataset: ${valDs.examples.length}`);
  if (limit !== 0) print(`(只处理了每个划分的前 ${take(train.length)} 条；--limit 0 处理全部，如 notebook)`);
  print("");

  const example = trainDs.examples[index];
  if (example === undefined) {
    throw new Error(`Invalid --index ${index}: the dataset has ${trainDs.examples.length} examples`);
  }
  const view = buildMaskingView(example, tokenizer);
  print(renderMaskingConsole(view, { color }));
  print(`\n(mask mode: ${mask}${mask === "assistant" ? "，即 notebook 的 mask_prompt=True" : ""})`);
  if (v.html) {
    await writeMaskingHtml(v.html, view, {
      details: [
        ["Model (tokenizer)", v.model!],
        ["Task", task + (plain ? " (plain)" : "")],
        ["Example", `train_dataset[${index}]`],
        ["Mask mode", mask],
        ["Max length", String(maxLength)],
      ],
      print,
    });
  }
  return 0;
}

if (import.meta.main) runMain("phases/04_loss_masking", () => main(process.argv.slice(2)));
