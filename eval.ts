/**
 * `bun run eval.ts` (or `deno task eval`): the notebook's held-out evaluation of the base model and the SFT
 * model (Part 6), or the free-form evaluation of your own test conversations (`--test-file`), with a Markdown
 * and a JSON report. See `--help` and `src/cli/eval.ts`.
 * @module
 */

import process from "node:process";
import { runMain } from "./src/cli/args.ts";
import { evalMain } from "./src/cli/eval.ts";

runMain("eval", () => evalMain(process.argv.slice(2)));
