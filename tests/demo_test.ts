// The offline demo end to end, scaled down (the real one is ~1.5 min): data, tiny model, training,
// evaluation, report files and the JSON summary line.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { demoMain } from "../demo.ts";

describe("deno task demo", () => {
  test("a small run writes the model, the report and a JSON summary", async () => {
    const out = await mkdtemp(join(tmpdir(), "sft-demo-"));
    try {
      const lines: string[] = [];
      const args = ["--out", out, "--train", "48", "--val", "8", "--test", "12", "--steps", "4", "--batch-size", "8"];
      const code = await demoMain([...args, "--backend", "cpu", "--json"], (l) => lines.push(l));
      expect(code).toBe(0);
      const summary = JSON.parse(lines[lines.length - 1]!);
      expect(summary.steps).toBe(4);
      expect(summary.test_examples).toBe(12);
      expect(summary.accuracy).toBeGreaterThanOrEqual(0);
      expect(summary.accuracy).toBeLessThanOrEqual(1);
      expect(summary.backend).toBe("cpu");
      const files = await readdir(out);
      for (const f of ["base_model", "model", "data", "metrics.jsonl", "loss_curve.png", "report.md", "report.json"]) {
        expect(files).toContain(f);
      }
      expect(lines.some((l) => l.startsWith("Tiny GPT-2: 2 layers, n_embd 64"))).toBe(true);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  test("the default demo reaches the accuracy the README quotes (≥ 95 %)", async () => {
    const out = await mkdtemp(join(tmpdir(), "sft-demo-full-"));
    try {
      const lines: string[] = [];
      expect(await demoMain(["--out", out, "--backend", "cpu", "--json"], (l) => lines.push(l))).toBe(0);
      const summary = JSON.parse(lines[lines.length - 1]!);
      expect(summary.test_examples).toBe(200);
      expect(summary.accuracy).toBeGreaterThanOrEqual(0.95);
      expect(summary.base_accuracy).toBeLessThan(0.5);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);

  test("--chat: conversations in, exact match of the generated answers out (≥ 90 %)", async () => {
    const out = await mkdtemp(join(tmpdir(), "sft-demo-chat-"));
    try {
      const lines: string[] = [];
      const args = ["--out", out, "--test", "60", "--backend", "cpu", "--chat", "--json"];
      expect(await demoMain(args, (l) => lines.push(l))).toBe(0);
      const summary = JSON.parse(lines[lines.length - 1]!);
      expect(summary.exact_match).toBeGreaterThanOrEqual(0.9);
      expect(summary.base_exact_match).toBeLessThan(0.2);
      expect(summary.token_accuracy).toBeGreaterThan(0.9);
      const files = await readdir(join(out, "chat"));
      expect(files.sort()).toEqual(["test.jsonl", "train.jsonl"]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);

  test("--help and a bad flag", async () => {
    const lines: string[] = [];
    expect(await demoMain(["--help"], (l) => lines.push(l))).toBe(0);
    expect(lines[0]).toContain("Usage: deno task demo");
    await expect(demoMain(["--steps", "0"], () => {})).rejects.toThrow("Invalid --steps: 0");
  });
});
