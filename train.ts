/**
 * `deno task train`: the notebook's SFT training run (Part 5) with its defaults. See `--help` and
 * `src/cli/train.ts`.
 * @module
 */

import process from "node:process";
import { runMain } from "./src/cli/args.ts";
import { trainMain } from "./src/cli/train.ts";

runMain("train", () => trainMain(process.argv.slice(2)));
