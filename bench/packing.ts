/**
 * Packing against per-batch padding on a dataset of mixed lengths: a messages-format JSONL of conversations
 * whose tokenized lengths spread evenly over 10 … --max-length (a user turn of random CJK characters from
 * the fixture tokenizer's vocabulary, an answer of a third of it), read back as `train --train-file` reads
 * it, then one epoch of training each way through the trainer (`packing` off, then on; `--runs` alternating
 * pairs, after an untimed warm-up of 3 steps each way) on a randomly initialised model of the real GPT-2 shape
 * (uer's vocabulary of 21128 + 63, dropout 0.1) or the fixture's tiny one. Reports per run: optimizer steps per epoch, the epoch's wall time, the median step time
 * and the median tokens/s (real tokens, padding not counted) over the steps after the first 2, and the
 * positions its batches hold (padding included).
 *
 * Usage: deno run -A bench/packing.ts [--shape real|tiny] [--examples 64] [--max-length 256]
 *          [--batch-size 4] [--runs 1] [--backend cpu] [--json]
 * @module
 */

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import { backendSettings } from "../src/env.ts";
import { choiceFlag, numberFlag, parseFlags, runMain, runtimeName } from "../src/cli/args.ts";
import { readChatData, sftInput } from "../src/data/formats.ts";
import { buildSftDataset } from "../src/data/sft_dataset.ts";
import { trainingRows } from "../src/train/trainer.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { PyRandom } from "../src/data/random.ts";
import { epochOrder, NOTEBOOK_TRAIN_CONFIG, trainLoop } from "../src/train/trainer.ts";

const FIXTURE = new URL("../tests/fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;

/** One epoch's figures. */
interface RunFigures {
  packing: boolean;
  steps: number;
  epoch_s: number;
  median_step_ms: number;
  median_tokens_per_s: number;
  tokens: number;
  /** Positions the epoch's batches hold, padding included (Σ B·T). */
  positions: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
}

/** Run the tool; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function packingBenchMain(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      shape: { type: "string" },
      examples: { type: "string" },
      "max-length": { type: "string" },
      "batch-size": { type: "string" },
      runs: { type: "string" },
      backend: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(
      "usage: bench/packing.ts [--shape real|tiny] [--examples 64] [--max-length 256] [--batch-size 4] [--runs 1] " +
        "[--backend cpu] [--json]",
    );
    return 0;
  }
  const shape = choiceFlag("shape", v.shape, ["real", "tiny"] as const, "real");
  const n = numberFlag("examples", v.examples, 64, { integer: true, min: 8 });
  const maxLength = numberFlag("max-length", v["max-length"], 256, { integer: true, min: 16, max: 1024 });
  const batchSize = numberFlag("batch-size", v["batch-size"], 4, { integer: true, min: 1 });
  const runs = numberFlag("runs", v.runs, 1, { integer: true, min: 1 });
  const be = await createBackend(parseBackendName(v.backend ?? "cpu"), backendSettings());
  const dir = await mkdtemp(join(tmpdir(), "bench-packing-"));
  try {
    // the fixture's tokenizer with the SFT tokens (its own tiny model is not used)
    const pair = await loadModelAndTokenizer(FIXTURE, be);
    const tok = pair.tokenizer;
    pair.model.dispose();
    const vocab = (await readFile(join(FIXTURE, "vocab.txt"), "utf8")).split("\n");
    const cjk = vocab.filter((w) => /^\p{Script=Han}$/u.test(w));
    // conversations of lengths spread evenly over 10 … maxLength tokens: the text of each is its length less
    // the framing (ChatML and the tokenizer's [CLS] … [SEP]: the tokens of a conversation of two characters,
    // less 2), at least a character for each turn
    const rnd = new PyRandom(7);
    const text = (k: number) => Array.from({ length: Math.max(k, 1) }, () => cjk[rnd.randrange(cjk.length)]).join("");
    const two = [{ role: "user" as const, content: cjk[0]! }, { role: "assistant" as const, content: cjk[0]! }];
    const framing = buildSftDataset([two], tok, { maxLength, mask: "assistant+eos" }).examples[0]!.inputIds.length - 2;
    const lines = Array.from({ length: n }, (_, i) => {
      const total = Math.round(10 + (i / (n - 1)) * (maxLength - 10)) - framing;
      const answer = Math.max(1, Math.floor(total / 3));
      return JSON.stringify({
        messages: [{ role: "user", content: text(total - answer) }, { role: "assistant", content: text(answer) }],
      });
    });
    rnd.shuffle(lines);
    const file = join(dir, "mixed.jsonl");
    await writeFile(file, lines.join("\n") + "\n");
    const data = await readChatData(file, "auto");
    const ds = buildSftDataset(data.examples.map(sftInput), tok, { maxLength, mask: "assistant+eos" });
    const lengths = ds.examples.map((e) => e.inputIds.length);
    const tokens = lengths.reduce((a, b) => a + b, 0);
    print(
      `${ds.examples.length} examples of ${Math.min(...lengths)}–${Math.max(...lengths)} tokens (${tokens} in all), ` +
        `${trainingRows(ds.examples, { packing: true, maxLength }).length} packed rows of ${maxLength}`,
    );
    const config: GPT2Config = shape === "real"
      ? {
        vocabSize: 21191,
        nPositions: 1024,
        nEmbd: 768,
        nLayer: 12,
        nHead: 12,
        layerNormEpsilon: 1e-5,
        activationFunction: "gelu_new",
        embdPdrop: 0.1,
        residPdrop: 0.1,
        attnPdrop: 0.1,
        tieWordEmbeddings: true,
        raw: {},
      }
      : { ...pair.model.config, vocabSize: tok.vocabSize, nPositions: Math.max(maxLength, 256) };
    const figures: RunFigures[] = [];
    // an untimed warm-up (JIT, buffer pools, BLAS threads): 3 steps each way
    for (const packing of [false, true]) {
      const model = GPT2.random(be, config, 0);
      const cfg = { ...NOTEBOOK_TRAIN_CONFIG, batchSize, epochs: 1, maxSteps: 3, maxLength, packing };
      (await trainLoop({ model, train: ds.examples, padId: tok.padTokenId, config: cfg })).optimizer.dispose();
      model.dispose();
    }
    for (let r = 0; r < runs; r++) {
      for (const packing of [false, true]) {
        const model = GPT2.random(be, config, 0);
        const stepMs: number[] = [], tps: number[] = [];
        let last = performance.now();
        const t0 = last;
        const result = await trainLoop({
          model,
          train: ds.examples,
          padId: tok.padTokenId,
          config: { ...NOTEBOOK_TRAIN_CONFIG, batchSize, epochs: 1, logEvery: 1, maxLength, packing, seed: 0 },
          onStep: (s) => {
            const t = performance.now();
            stepMs.push(t - last);
            tps.push(s.tokensPerSecond);
            last = t;
          },
        });
        const epochS = (performance.now() - t0) / 1000;
        result.optimizer.dispose();
        model.dispose();
        // the positions of the epoch's batches as the loop forms them: its order, each batch padded to its longest
        const rows = trainingRows(ds.examples, { packing, maxLength });
        const order = epochOrder(rows.length, 0, 0);
        let positions = 0;
        for (let i = 0; i < order.length; i += batchSize) {
          const batch = order.slice(i, i + batchSize).map((k) => rows[k]!.inputIds.length);
          positions += batch.length * Math.max(...batch);
        }
        const f = {
          packing,
          steps: result.position.step,
          epoch_s: epochS,
          median_step_ms: median(stepMs.slice(2)),
          median_tokens_per_s: median(tps.slice(2)),
          tokens,
          positions,
        };
        figures.push(f);
        print(
          `${packing ? "packing" : "padding"}: ${f.steps} steps, epoch ${f.epoch_s.toFixed(1)} s, median step ` +
            `${f.median_step_ms.toFixed(0)} ms, median ${f.median_tokens_per_s.toFixed(0)} tokens/s, ` +
            `${f.positions} positions (${(100 * (1 - tokens / f.positions)).toFixed(1)} % padding)`,
        );
      }
    }
    print(`${be.description} (${runtimeName()}), shape ${shape}, batch ${batchSize}`);
    if (v.json) print(JSON.stringify({ tool: "packing", runtime: runtimeName(), device: be.description, figures }));
    return 0;
  } finally {
    await rm(dir, { recursive: true, force: true });
    be.dispose();
  }
}

if (import.meta.main) runMain("packing", () => packingBenchMain(process.argv.slice(2)));
