// The training command line with checkpoint saves slowed down (SLOW_SAVE_MS per file, default 200), so a
// test can send a second Ctrl-C while a save is being written.
import process from "node:process";
import { runMain } from "../../src/cli/args.ts";
import { trainMain } from "../../src/cli/train.ts";
import { DEFAULT_CHECKPOINT_FS } from "../../src/train/checkpoint.ts";

const delay = Number(process.env.SLOW_SAVE_MS ?? 200);
runMain("train", () =>
  trainMain(process.argv.slice(2), console.log, {
    checkpointFs: {
      async writeFileSynced(path, data) {
        await new Promise((r) => setTimeout(r, delay));
        await DEFAULT_CHECKPOINT_FS.writeFileSynced(path, data);
      },
    },
  }));
