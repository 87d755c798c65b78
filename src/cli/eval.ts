/**
 * The evaluation command line, shared by `eval.ts` and `phases/06_evaluate.ts`: every flag is checked and the
 * SFT dir and test data read before a model is loaded, then `runEvaluation` (the notebook's tasks) or
 * `runFreeformEvaluation` (your own conversations, src/eval/freeform.ts) runs and the report is printed.
 * @module
 */

import { stdout } from "node:process";
import { createBackend, parseBackendName, profileReport } from "../backend/mod.ts";
import { choiceFlag, ENV_HELP, listFlag, numberFlag, parseFlags, SAMPLING_SEED_RANGE } from "./args.ts";
import { colorEnabled, renderConsole } from "../eval/report.ts";
import { EVAL_TASKS, NOTEBOOK_EVAL, planEvaluation, runEvaluation, summaryJson } from "../eval/run.ts";
import { planFreeform, wantsFreeform } from "../eval/freeform.ts";
import { freeformSummaryJson, runFreeformEvaluation } from "../eval/freeform_run.ts";
import { renderFreeformConsole } from "../eval/freeform_report.ts";
import { checkSftDir } from "../eval/plan.ts";
import { DATA_FORMATS } from "../data/formats.ts";
import { DEFAULT_MODEL } from "../io/hub.ts";
import { readSettings } from "../env.ts";

/** The `--task` values: the notebook's tasks and free-form chat. */
const TASK_NAMES: readonly string[] = [...EVAL_TASKS, "chat"];

export const EVAL_HELP = `Usage: bun run eval.ts [options]        (or: deno task eval [options])

Evaluates the SFT model and the base model on the held-out test set as the notebook's Part 6 does:
per-category and overall accuracy, three samples, and base vs SFT side by side on the first 5 test items.
Classification (a task with labels) scores every label by its mean log-probability after the prompt (the
notebook's USE_LM_CLASSIFIER): the base model sees the raw instruction, the SFT model the ChatML prompt.
Other tasks generate an answer (greedy by default) and score it as text, JSON or number.
A model trained on your own conversations (task "chat") is evaluated free-form on your --test-file.

Models and data
  --sft DIR             the SFT model directory (default models/ch8_sft_gpt2, written by \`deno task train\`),
                        or a LoRA adapter directory (\`deno task train --lora\`; peft's adapter_config.json)
  --adapter DIR         the same as --sft DIR for a LoRA adapter: the SFT model is its base model
                        (adapter_config.json's base_model_name_or_path) with the adapter merged
  --model ID|DIR        the base model: hub id, id@revision or local dir
                        (default: model_name in the SFT dir's sft_task.json, else ${DEFAULT_MODEL})
  --task NAME           ${TASK_NAMES.join(" | ")} (default: sft_task.json's task, else classification;
                        chat: free-form, see below)
  --plain               json_extraction: score "姓名：…；邮箱：…；订单号：…" answers (default: sft_task.json's
                        use_plain_extract)
  --labels A,B,…        classification: the labels to score (default: sft_task.json's labels, else the notebook's
                        six)
  --data-dir DIR        the task's JSONL files (default data); a missing test file is generated as the
                        notebook does (1000 records, seed 44)
  --test-file PATH      evaluate this JSONL file instead of the task's test file in --data-dir
  --max-samples N|all   the first N test records (default ${NOTEBOOK_EVAL.maxSamples}, EVAL_MAX_SAMPLES; 0 or "all": every record)
  --no-base             skip the base model (EVAL_RUN_BASE = False)
  --offline             use only the local Hugging Face cache for the base model (as HF_HUB_OFFLINE=1)

Free-form (your own conversations: sft_task.json's task "chat", --task chat, --format, --score, or a
--test-file of conversations)
  --test-file PATH      the test conversations (required); each one's last assistant turn is the reference,
                        the turns before it the ChatML prompt. Reported per model: loss and perplexity over
                        the assistant turns of every conversation, token accuracy (argmax next token = label),
                        and exact match (after trimming) of the answers generated for the first --max-samples
  --format NAME         the test file's format: messages | sharegpt | prompt-completion | notebook
                        (default auto: from the first record; text has no reference answer)
  --score HOW           also score the answers by: contains (the reference occurs in the answer) |
                        regex:PATTERN (the answer matches PATTERN) | json-fields (the answer's JSON object has
                        the reference object's fields, equal)

Generation (tasks without labels; the notebook: greedy, repetition penalty 1.1, no-repeat 3-gram)
  --max-new-tokens N    (default ${NOTEBOOK_EVAL.maxNewTokens})
  --do-sample           sample instead of greedy decoding (EVAL_DO_SAMPLE)
  --temperature X       sampling temperature (default 0.7 with --do-sample)
  --top-p X             nucleus sampling (default 0.9 with --do-sample)
  --seed N              sampling seed; item i uses seed + i (default 0)
  --gen-batch N         prompts generated at once, each row computing what it would alone (default 16;
                        1: one at a time, as the notebook)

Run and output
  --backend NAME        auto | cpu | webgpu (default auto: WebGPU on a hardware adapter, else CPU)
  --report PATH         write PATH.md and PATH.json, and for classification the confusion matrices as
                        PATH.confusion.svg (default runs/eval/report)
  --no-report           write no report files
  --json                print a one-line JSON summary last: {task, sft: {overall, categories}, base?, seconds, report?};
                        free-form: {task: "chat", exact_match, score?, sft: {exact_match, loss, perplexity,
                        token_accuracy, …}, base?, test_file, seconds, report?}
  --quiet               no progress display and no report printout (errors and --json still print)
  --no-color            no colours (also when NO_COLOR is set or the output is not a terminal)
  -h, --help            this text

Progress shows as a bar on a terminal, else as the notebook's "  evaluated 50/200" lines.

${ENV_HELP}`;

/** `--max-samples`: a whole number ≥ 0, or "all"; 0 and "all" mean every record (null). */
function maxSamplesFlag(value: string | undefined): number | null {
  if (value === undefined) return NOTEBOOK_EVAL.maxSamples;
  if (value.trim().toLowerCase() === "all") return null;
  const n = numberFlag("max-samples", value, 0, { integer: true, min: 0 });
  return n === 0 ? null : n;
}

/** Options of {@link evalMain} for the callers that frame it (phases/06_evaluate.ts). */
export interface EvalMainOptions {
  /** Printed after the flags are checked, before any work (the phase's heading). */
  heading?: readonly string[];
  /** Progress display (default "auto": a bar on a terminal, else the notebook's lines). */
  progress?: "auto" | "lines";
}

/**
 * Parse the evaluation flags and run the evaluation; `argv` as `process.argv.slice(2)`. Returns the exit
 * code. `eval.ts` (`bun run eval.ts`, `deno task eval`) and phases/06_evaluate.ts both call this.
 */
/** `--sft`, or `--adapter` (a LoRA adapter directory: the SFT model is its base with it merged). */
function sftDirFlag(sft: string | undefined, adapter: string | undefined): string {
  if (sft !== undefined && adapter !== undefined) {
    throw new Error("Invalid --adapter with --sft: the adapter is the SFT model; give one of them");
  }
  return adapter ?? sft ?? "models/ch8_sft_gpt2";
}

export async function evalMain(
  argv: string[],
  print: (line: string) => void = console.log,
  opts: EvalMainOptions = {},
): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      sft: { type: "string" },
      adapter: { type: "string" },
      model: { type: "string" },
      task: { type: "string" },
      plain: { type: "boolean" },
      labels: { type: "string" },
      "data-dir": { type: "string", default: "data" },
      "test-file": { type: "string" },
      format: { type: "string" },
      score: { type: "string" },
      "max-samples": { type: "string" },
      "no-base": { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      "max-new-tokens": { type: "string" },
      "do-sample": { type: "boolean", default: false },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      "gen-batch": { type: "string" },
      backend: { type: "string" },
      report: { type: "string", default: "runs/eval/report" },
      "no-report": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      "no-color": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(EVAL_HELP);
    return 0;
  }
  // every flag is checked, and the SFT dir and test data read, before a model is loaded
  const backendName = parseBackendName(v.backend);
  const env = readSettings();
  const task = v.task === undefined ? undefined : choiceFlag("task", v.task, TASK_NAMES, "classification");
  const format = v.format === undefined ? undefined : choiceFlag("format", v.format, DATA_FORMATS, "auto");
  const doSample = v["do-sample"]!;
  const run = {
    sftDir: sftDirFlag(v.sft, v.adapter),
    model: v.model,
    task,
    plain: v.plain,
    labels: listFlag("labels", v.labels),
    dataDir: v["data-dir"]!,
    testFile: v["test-file"],
    maxSamples: maxSamplesFlag(v["max-samples"]),
    runBase: !v["no-base"],
    decoding: {
      maxNewTokens: numberFlag("max-new-tokens", v["max-new-tokens"], NOTEBOOK_EVAL.maxNewTokens, {
        integer: true,
        min: 1,
      }),
      doSample,
      temperature: v.temperature === undefined ? undefined : numberFlag("temperature", v.temperature, 0, { min: 0 }),
      topP: v["top-p"] === undefined ? undefined : numberFlag("top-p", v["top-p"], 1, { min: 0, max: 1 }),
      seed: numberFlag("seed", v.seed, 0, SAMPLING_SEED_RANGE),
      batchSize: numberFlag("gen-batch", v["gen-batch"], 16, { integer: true, min: 1 }),
    },
    reportBase: v["no-report"] ? undefined : v.report!,
    hub: { env: env.hub, offline: v.offline || undefined },
    progress: v.quiet ? "none" as const : opts.progress ?? "auto" as const,
  };
  const say = v.quiet ? () => {} : print;
  for (const line of opts.heading ?? []) say(line);
  if (await wantsFreeform({ task, testFile: run.testFile, format, score: v.score }, await checkSftDir(run.sftDir))) {
    // your own conversations (src/eval/freeform.ts)
    if (run.labels) throw new Error("Invalid --labels: free-form evaluation has no labels (only classification does)");
    if (run.plain) throw new Error("Invalid --plain: free-form evaluation scores answers with --score, not --plain");
    const plan = await planFreeform({ ...run, format, score: v.score });
    const be = await createBackend(backendName);
    say(`Using backend: ${be.description}`);
    try {
      const result = await runFreeformEvaluation({ ...run, plan, backend: be, print: say });
      say("");
      say(renderFreeformConsole(result.report, { color: !v["no-color"] && colorEnabled(stdout) }));
      if (result.paths) say(`\nReport: ${result.paths.md} and ${result.paths.json}`);
      const profile = await profileReport(be);
      if (profile) say(profile);
      if (v.json) print(JSON.stringify(freeformSummaryJson(result)));
      return 0;
    } finally {
      be.dispose();
    }
  }
  const plan = await planEvaluation(run, say);
  const be = await createBackend(backendName, env.backend);
  say(`Using backend: ${be.description}`);
  try {
    const result = await runEvaluation({ ...run, plan, backend: be, print: say });
    say("");
    say(renderConsole(result.report, { color: !v["no-color"] && colorEnabled(stdout, env.noColor) }));
    if (result.paths) {
      const p = result.paths;
      say(`\nReport: ${p.md} and ${p.json}${p.svg ? ` (confusion matrices: ${p.svg})` : ""}`);
    }
    const profile = await profileReport(be);
    if (profile) say(profile);
    if (v.json) print(JSON.stringify(summaryJson(result)));
    return 0;
  } finally {
    be.dispose();
  }
}
