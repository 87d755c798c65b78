/**
 * `deno task data`: write the notebook's SFT data files (Part 3) and say what was written: the path,
 * record count, size and sha256 of each file. With the defaults the classification files are byte for
 * byte the notebook's `gpt2_sft_{train,val,test}.jsonl`. See `--help`.
 * @module
 */

import { readFile } from "node:fs/promises";
import process from "node:process";
import { choiceFlag, numberFlag, parseFlags, runMain } from "./args.ts";
import { type SftTask, writeDataset } from "../data/synth.ts";
import { TASKS } from "../train/run.ts";

const HELP = `Usage: deno task data [options]

Generates the notebook's synthetic SFT data (seeds 42/43/44 for train/val/test) and writes three JSONL
files, then prints each file's path, record count, size and sha256.

  --task NAME      classification (gpt2_sft_*.jsonl, the notebook's default) |
                   json_extraction (custom_sft_*.jsonl: {"name","email","order_id"} as JSON)
  --plain          json_extraction: store the "姓名：…；邮箱：…；订单号：…" form (the notebook's USE_PLAIN_EXTRACT)
  --out DIR        where to write (default data)
  --train N        training records (default 8000)
  --val N          validation records (default 1000)
  --test N         test records (default 1000)
  -h, --help       this text
`;

/** What was written for one split. */
export interface WrittenFile {
  split: "train" | "val" | "test";
  path: string;
  records: number;
  bytes: number;
  sha256: string;
}

/** Lowercase hex sha256 of `bytes` (Web Crypto). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Write the three splits and describe each file (read back after writing). */
export async function writeAndDescribe(opts: {
  task: SftTask;
  outDir: string;
  plain?: boolean;
  counts?: { train?: number; val?: number; test?: number };
}): Promise<WrittenFile[]> {
  const { files, counts } = await writeDataset(opts);
  const out: WrittenFile[] = [];
  for (const split of ["train", "val", "test"] as const) {
    const path = files[split];
    const bytes = await readFile(path);
    out.push({ split, path, records: counts[split], bytes: bytes.length, sha256: await sha256Hex(bytes) });
  }
  return out;
}

/**
 * The records per split from `--train N`, `--val N`, `--test N` (defaults 8000, 1000, 1000, the notebook's;
 * whole numbers ≥ 0), as this CLI and phases/03_data.ts read them.
 */
export function splitCountFlags(
  v: { train?: string; val?: string; test?: string },
): { train: number; val: number; test: number } {
  const count = { integer: true, min: 0 };
  return {
    train: numberFlag("train", v.train, 8000, count),
    val: numberFlag("val", v.val, 1000, count),
    test: numberFlag("test", v.test, 1000, count),
  };
}

/** The CLI; `argv` without the runtime and script. Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      task: { type: "string" },
      plain: { type: "boolean", default: false },
      out: { type: "string", default: "data" },
      train: { type: "string" },
      val: { type: "string" },
      test: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const task = choiceFlag("task", v.task, TASKS, "classification");
  const counts = splitCountFlags(v);
  if (v.plain && task !== "json_extraction") {
    print("Note: --plain applies to json_extraction only; ignored for classification (as the notebook does)");
  }
  const written = await writeAndDescribe({ task, outDir: v.out!, plain: v.plain, counts });
  const form = task === "json_extraction" ? (v.plain ? " (plain form)" : " (JSON answers)") : "";
  print(`Wrote ${task} data${form} to ${v.out}:`);
  const width = Math.max(...written.map((w) => w.path.length));
  for (const w of written) {
    print(
      `  ${w.path.padEnd(width)}  ${String(w.records).padStart(5)} records  ${
        w.bytes.toLocaleString("en-US").padStart(11)
      } bytes  sha256 ${w.sha256}`,
    );
  }
  return 0;
}

if (import.meta.main) runMain("data", () => main(process.argv.slice(2)));
