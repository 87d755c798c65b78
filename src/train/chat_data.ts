/**
 * The training and validation data of a run on your own chat file (`--train-file`, any format of
 * src/data/formats.ts), split off with `--val-split` or read from `--val-file`.
 * @module
 */

import { basename } from "node:path";
import { type DataFormat, readChatData, sftInput, splitValidation } from "../data/formats.ts";
import { formatLines, type SftInput } from "../data/sft_dataset.ts";
import type { ChatExample } from "../data/formats.ts";

/** Where a run's chat data comes from. */
export interface ChatDataOptions {
  trainFile: string;
  /** A validation file; else `valSplit` of the training file is held out. */
  valFile?: string;
  /** The fraction of the training file held out for validation when there is no `valFile` (default 0). */
  valSplit?: number;
  format?: DataFormat;
  limitTrain?: number;
  limitVal?: number;
  /** Seeds the `valSplit` shuffle. */
  seed: number;
}

/** The examples of one split, with each one's line in its file. */
export interface SplitData {
  inputs: SftInput[];
  lines: number[];
  /** The file's name, for messages. */
  name: string;
}

/** Read the chat data of a run: the training and validation examples and the files they came from. */
export async function loadChatTrainingData(
  o: ChatDataOptions,
  print: (line: string) => void,
): Promise<{ train: SplitData; val: SplitData; files: { train: string; val: string | null }; format: string }> {
  const data = await readChatData(o.trainFile, o.format ?? "auto");
  let trainEx: ChatExample[] = data.examples;
  let valEx: ChatExample[] = [];
  let valName = basename(o.trainFile);
  if (o.valFile !== undefined) {
    if (o.valSplit) throw new Error("Invalid --val-split with --val-file: choose one");
    const val = await readChatData(o.valFile, o.format ?? "auto");
    valEx = val.examples;
    valName = basename(o.valFile);
    if (val.skipped.length) print(skippedLine(o.valFile, val.skipped));
  } else if (o.valSplit) {
    ({ train: trainEx, val: valEx } = splitValidation(data.examples, o.valSplit, o.seed));
  }
  print(`Data: ${o.trainFile} (format ${data.format}): ${data.examples.length} examples`);
  if (data.skipped.length) print(skippedLine(o.trainFile, data.skipped));
  if (trainEx.length === 0) throw new Error(`Cannot train: ${o.trainFile} has no example with an answer to learn`);
  const pick = (ex: ChatExample[], limit: number | undefined) => ex.slice(0, limit ?? ex.length);
  const split = (ex: ChatExample[], name: string): SplitData => ({
    inputs: ex.map(sftInput),
    lines: ex.map((e) => e.line),
    name,
  });
  return {
    train: split(pick(trainEx, o.limitTrain), basename(o.trainFile)),
    val: split(pick(valEx, o.limitVal), valName),
    files: { train: o.trainFile, val: o.valFile ?? null },
    format: data.format,
  };
}

function skippedLine(file: string, lines: number[]): string {
  const shown = formatLines(lines);
  return `Skipped ${lines.length} conversation${lines.length > 1 ? "s" : ""} of ${file} with no assistant turn ` +
    `to learn (every assistant message has weight 0, or there is none): line${lines.length > 1 ? "s" : ""} ${shown}`;
}
