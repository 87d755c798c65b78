/**
 * `deno task show-masking`: the notebook's `visualize_loss_masking` for one training record, in the
 * terminal (the first 50 tokens, green = supervised, red = masked; NO_COLOR honoured) and optionally as a
 * self-contained HTML page with every token. Only the tokenizer is loaded (no weights). See `--help`.
 * @module
 */

import { DATA_FORMATS, readChatData, sftInput } from "../data/formats.ts";
import { TRAIN_ON } from "../data/chatml.ts";
import type { SftInput } from "../data/sft_dataset.ts";
import { atomicWriteFile } from "../io/atomic.ts";
import process from "node:process";
import { choiceFlag, numberFlag, parseFlags, runMain } from "./args.ts";
import { IM_START } from "../data/chatml.ts";
import { buildMaskingView, type MaskingView, renderMaskingConsole, renderMaskingHtml } from "../data/masking_view.ts";
import { MASK_MODES, processExample, type SftExampleOptions } from "../data/sft_dataset.ts";
import { conversationRenderer, resolveChatTemplate } from "../data/template.ts";
import { toMessages } from "../data/synth.ts";
import { colorEnabled } from "../eval/report.ts";
import { hubEnvironment, outputSettings, readVariables } from "../env.ts";
import { DEFAULT_MODEL, GPT2_MODEL_FILES, resolveModel, type ResolveModelOptions } from "../io/hub.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import { skippedTokensWarning } from "../tokenizer/tokenizer.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { loadTaskRecords, TASKS } from "../train/run.ts";

const HELP = `Usage: deno task show-masking [options]

Shows which tokens of one training record carry loss (the notebook's visualize_loss_masking): the first
50 tokens, green where the loss is computed and red where it is masked (-100), then the counts. Only the
tokenizer is loaded; the notebook's SFT tokens are added when it lacks <|im_start|>.

  --model ID|DIR        tokenizer source: hub id, id@revision or local dir (default ${DEFAULT_MODEL})
  --task NAME           classification | json_extraction (default classification)
  --plain               json_extraction: the "姓名：…；邮箱：…；订单号：…" form
  --data-dir DIR        JSONL files, generated when missing (default data)
  --train-file F.jsonl  your own chat data in place of the notebook's task (the formats of deno task train)
  --format NAME         auto | messages | sharegpt | prompt-completion | text | notebook (default auto)
  --train-on WHICH      all | last: the assistant turns with loss (default all)
  --chat-template T     with --train-file: chatml (default) | model (the model's chat_template) | FILE.jinja,
                        as deno task train
  --json                print every example of --train-file (or the task's training split) as one JSON
                        line, in file order: {"input_ids": […], "labels": […]}, unpadded, after truncation
                        to --max-length, labels -100 where there is no loss (conversations with nothing to
                        learn are left out, as training leaves them out)
  --index N             which training record (default 0, the notebook's train_dataset[0])
  --mask MODE           assistant | assistant+eos | none (default assistant+eos, as deno task train;
                        the notebook: assistant)
  --max-length N        truncate to N tokens (default 256)
  --html FILE           where to write the view of every token as a self-contained HTML page
                        (default runs/masking.html)
  --no-html             print the view only
  --no-color            plain text (supervised tokens as «token»); also when NO_COLOR is set or the
                        output is not a terminal
  --offline             use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)
  -h, --help            this text
`;

/** The hub files a tokenizer needs (tokenizer.json, else vocab.txt or vocab.json + merges.txt, with the configs): no weights. */
export const TOKENIZER_FILES = GPT2_MODEL_FILES.filter((f) => f.what === "tokenizer");

/**
 * Load only the tokenizer of `spec` (hub id or local dir) and give it the notebook's SFT tokens when it
 * lacks `<|im_start|>` (a saved SFT model has them already). Returns the tokenizer and how many ids were
 * added.
 */
export async function loadSftTokenizer(
  spec: string,
  hub: ResolveModelOptions = {},
): Promise<{ tokenizer: Tokenizer; added: number; dir: string }> {
  const dir = await resolveModel(spec, { ...hub, files: TOKENIZER_FILES });
  const tokenizer = await loadTokenizer(dir);
  const added = tokenizer.tokenToId(IM_START) === undefined ? tokenizer.prepareForSft() : 0;
  return { tokenizer, added, dir };
}

/** The CLI; `argv` without the runtime and script (as `process.argv.slice(2)`). Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      task: { type: "string" },
      plain: { type: "boolean", default: false },
      "data-dir": { type: "string", default: "data" },
      index: { type: "string" },
      "train-file": { type: "string" },
      format: { type: "string" },
      "train-on": { type: "string" },
      "chat-template": { type: "string" },
      json: { type: "boolean", default: false },
      mask: { type: "string" },
      "max-length": { type: "string" },
      html: { type: "string", default: "runs/masking.html" },
      "no-html": { type: "boolean", default: false },
      "no-color": { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const task = choiceFlag("task", v.task, TASKS, "classification");
  const mask = choiceFlag("mask", v.mask, MASK_MODES, "assistant+eos");
  const index = numberFlag("index", v.index, 0, { integer: true, min: 0 });
  const maxLength = numberFlag("max-length", v["max-length"], 256, { integer: true, min: 3 });
  const vars = readVariables(); // no backend here: only the output and hub variables
  const color = !v["no-color"] && colorEnabled(process.stdout, outputSettings(vars).noColor);

  const { tokenizer, dir } = await loadSftTokenizer(v.model!, {
    env: hubEnvironment(vars),
    offline: v.offline || undefined,
  });
  const skipped = skippedTokensWarning(tokenizer.skippedTokens, dir);
  if (skipped !== undefined) console.error(`warning: ${skipped}`);
  const trainOn = choiceFlag("train-on", v["train-on"], TRAIN_ON, "all");
  let inputs: SftInput[];
  // where each input comes from, for errors: the line of --train-file, else the record's index
  let where = (i: number) => `record ${i}`;
  const opts: SftExampleOptions = { maxLength, mask, trainOn };
  if (v["train-file"] !== undefined) {
    const file = v["train-file"];
    const data = await readChatData(file, choiceFlag("format", v.format, DATA_FORMATS, "auto"));
    inputs = data.examples.map(sftInput);
    where = (i) => `line ${data.examples[i]!.line} of ${file}`;
    opts.render = conversationRenderer(await resolveChatTemplate(v["chat-template"] ?? "chatml", dir));
  } else {
    for (const f of ["format", "chat-template"] as const) {
      if (v[f] !== undefined) throw new Error(`Invalid --${f}: it goes with --train-file (your own chat data)`);
    }
    const records = await loadTaskRecords(task, v["data-dir"]!, "train", {
      plain: v.plain,
      print: v.json ? () => {} : print,
    });
    inputs = records.map((r) => toMessages(r, { plain: v.plain }));
  }
  const exampleAt = (i: number) => {
    try {
      return processExample(inputs[i]!, tokenizer, opts);
    } catch (e) {
      throw new Error(`Cannot render ${where(i)}: ${e instanceof Error ? e.message : e}`);
    }
  };
  if (v.json) {
    for (const i of inputs.keys()) {
      const ex = exampleAt(i);
      if (ex) print(JSON.stringify({ input_ids: ex.inputIds, labels: ex.labels }));
    }
    return 0;
  }
  const input = inputs[index];
  if (input === undefined) {
    throw new Error(`Invalid --index ${index}: the training data has ${inputs.length} examples`);
  }
  const example = exampleAt(index);
  if (example === undefined) {
    throw new Error(`Record ${index} has no supervised token after truncation to ${maxLength} (mask mode "${mask}")`);
  }
  const view = buildMaskingView(example, tokenizer);
  print(renderMaskingConsole(view, { color }));
  if (v.html && !v["no-html"]) {
    await writeMaskingHtml(v.html, view, {
      details: [
        ["Model (tokenizer)", v.model!],
        ["Task", task + (v.plain ? " (plain)" : "")],
        ["Record", `train[${index}]`],
        ["Mask mode", mask],
        ["Max length", String(maxLength)],
      ],
      print,
    });
  }
  return 0;
}

/**
 * Write the masking view of every token as a self-contained HTML page at `path` (atomically), with the
 * `details` rows above it, and say so through `print`; as this CLI and phases/04_loss_masking.ts do.
 */
export async function writeMaskingHtml(
  path: string,
  view: MaskingView,
  opts: { details: [string, string][]; print: (line: string) => void },
): Promise<void> {
  const html = renderMaskingHtml(view, { details: opts.details });
  try {
    await atomicWriteFile(path, html);
  } catch (e) {
    throw new Error(`Cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  opts.print(`Wrote ${path} (${view.total} tokens)`);
}

if (import.meta.main) runMain("show-masking", () => main(process.argv.slice(2)));
