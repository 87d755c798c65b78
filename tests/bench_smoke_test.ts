/**
 * The benchmark scripts still run and report what they promise (not how fast: timings are not asserted, the
 * machine running the tests is shared). `bench/classify.ts`'s `benchClassifier` on a few prompts,
 * `bench/time_to_accuracy.ts` for a few steps in both padding modes, with `--save-init` for the PyTorch side and
 * `--profile`, `bench/tiny_steps.ts` for 12 steps, and `bench/generate.ts`'s `benchGeneration` on a few prompts.
 */

import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchClassifier } from "../bench/classify.ts";
import { benchGeneration } from "../bench/generate.ts";
import { timeToAccuracyMain } from "../bench/time_to_accuracy.ts";
import { tinyStepsMain } from "../bench/tiny_steps.ts";
import { CpuBackend } from "../src/backend/cpu.ts";

describe("bench scripts (smoke)", () => {
  test("tiny_steps: 12 steps, 2 timed; the summary line and the JSON", async () => {
    const lines: string[] = [];
    expect(await tinyStepsMain(["--steps", "12", "--json"], (l) => lines.push(l))).toBe(0);
    expect(lines[1]).toMatch(/^2 timed steps: median [\d.]+ ms, min [\d.]+, p90 [\d.]+, max [\d.]+$/);
    const out = JSON.parse(lines.at(-1)!) as { tool: string; steps_ms: number[]; median_ms: number };
    expect(out.tool).toBe("tiny_steps");
    expect(out.steps_ms.length).toBe(2);
    expect(out.median_ms).toBeGreaterThan(0);
  }, 60_000);

  test("time_to_accuracy --profile: a per-op table of the training steps, per step", async () => {
    const lines: string[] = [];
    const code = await timeToAccuracyMain(
      [
        ...["--backend", "cpu", "--pad", "longest", "--train", "48", "--eval-n", "6", "--eval-every", "2"],
        ...["--max-steps", "4", "--untimed-steps", "0", "--target", "1", "--profile"],
      ],
      (l) => lines.push(l),
    );
    expect(code).toBe(0);
    const title = lines.findIndex((l) => l.startsWith("Time by op on the CPU, --pad longest, the 4 training steps"));
    expect(title).toBeGreaterThan(0);
    const table = lines.slice(title).join("\n");
    for (const op of ["attentionForward", "attentionBackward", "geluForward", "adamw", "total"]) {
      expect(table).toContain(op);
    }
    // per step: one embedding and five layernorms (2 layers, then ln_f); the evaluations' forwards would add more
    expect(table).toMatch(/\nembeddingForward +1 /);
    expect(table).toMatch(/\nlayernormForward +5 /);
  }, 60_000);

  test("benchGeneration: one at a time and batched give the same ids; the figures are filled in", async () => {
    const be = new CpuBackend();
    const r = await benchGeneration(be, { n: 5, newTokens: 6, batch: 2, shape: "tiny" });
    expect(r.same_ids).toBe(5);
    expect(r.new_tokens).toBe(30); // no eos: every prompt its full budget
    expect(r.prompt_tokens).toBeGreaterThan(20); // ChatML-wrapped extraction instructions
    for (const k of ["one_at_a_time_ms", "batched_ms", "batched_tokens_per_s", "speedup"] as const) {
      expect(r[k]).toBeGreaterThan(0);
    }
  }, 60_000);

  test("benchClassifier: the three ways agree, the shared prefix is found, the figures are filled in", async () => {
    const be = new CpuBackend();
    const r = await benchClassifier(be, { n: 4, shape: "tiny" });
    expect(r.same_predictions).toBe(4);
    expect(r.labels).toBe(6);
    expect(r.shared_prefix_tokens).toBeGreaterThan(20); // the chat template and the instruction
    expect(r.shared_prefix_tokens).toBeLessThan(r.prompt_tokens);
    for (const k of ["notebook_ms_per_example", "ours_ms_per_example", "batched_ms_per_example", "speedup"] as const) {
      expect(r[k]).toBeGreaterThan(0);
    }
  }, 60_000);

  test("time_to_accuracy: both padding modes from the same start, same losses, fewer positions per batch", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tta-"));
    try {
      const lines: string[] = [];
      const code = await timeToAccuracyMain(
        [
          ...["--backend", "cpu", "--pad", "both", "--train", "48", "--eval-n", "6", "--eval-every", "2"],
          ...["--max-steps", "4", "--untimed-steps", "0", "--target", "1", "--json", "--save-init", dir],
        ],
        (l) => lines.push(l),
      );
      expect(code).toBe(0);
      const out = JSON.parse(lines.at(-1)!) as {
        runs: { pad: string; steps: number; tokens: number; curve: { step: number; loss: number }[] }[];
      };
      const longest = out.runs.find((r) => r.pad === "longest")!, fixed = out.runs.find((r) => r.pad === "max_length")!;
      expect(longest.steps).toBe(4); // 100 % is not reached in 4 steps: the cap stops both
      expect(fixed.steps).toBe(4);
      expect(fixed.tokens).toBe(4 * 16 * 256); // every row padded to 256
      expect(longest.tokens).toBeLessThan(fixed.tokens / 1.5);
      // padding changes nothing but the time: the same losses at the same steps
      expect(longest.curve.map((p) => p.step)).toEqual(fixed.curve.map((p) => p.step));
      for (const [i, p] of longest.curve.entries()) expect(Math.abs(p.loss - fixed.curve[i]!.loss)).toBeLessThan(1e-4);
      // --save-init: what bench/pytorch_time_to_accuracy.py reads
      const settings = JSON.parse(await readFile(join(dir, "tta_settings.json"), "utf8")) as { labels: unknown[] };
      expect(settings.labels.length).toBe(6);
      const train = (await readFile(join(dir, "train.jsonl"), "utf8")).trim().split("\n");
      expect(train.length).toBe(48);
      expect(JSON.parse(await readFile(join(dir, "config.json"), "utf8")).n_positions).toBeGreaterThanOrEqual(256);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
