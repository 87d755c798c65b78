// The front doors end to end on the fixture's tiny base model (model-bin: vocab.txt only, SFT tokens added at
// load): `deno task train` then `bun run eval.ts`, and the notebook's phases 5 and 6, which frame the same code.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { evalMain } from "../src/cli/eval.ts";
import { trainMain } from "../src/cli/train.ts";
import { main as phase5 } from "../phases/05_train.ts";
import { main as phase6 } from "../phases/06_evaluate.ts";

const BASE = new URL("../../shared/fixtures/tiny-gpt2-zh/model-bin", import.meta.url).pathname;

describe("train and eval command lines", () => {
  test("train saves a model that eval then scores against the base model", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sft-cli-"));
    try {
      const data = join(dir, "data"), out = join(dir, "model"), run = join(dir, "run");
      const common = ["--model", BASE, "--backend", "cpu", "--data-dir", data];
      const lines: string[] = [];
      const small = ["--limit-train", "8", "--limit-val", "4", "--max-steps", "2", "--max-length", "160"];
      const code = await trainMain(
        [...common, ...small, "--out", out, "--run-dir", run, "--quiet"],
        (l) => lines.push(l),
      );
      expect(code).toBe(0);
      expect(lines).toContain("Processed 8/8 examples");
      expect(lines.some((l) => l.startsWith("Saved SFT model to"))).toBe(true);
      expect(await readdir(out)).toContain("sft_task.json");

      const evalLines: string[] = [];
      const args = ["--sft", out, "--backend", "cpu", "--data-dir", data, "--max-samples", "4", "--no-report"];
      expect(await evalMain([...args, "--json", "--quiet"], (l) => evalLines.push(l))).toBe(0);
      const summary = JSON.parse(evalLines[evalLines.length - 1]!);
      expect(summary.task).toBe("classification");
      expect(summary.sft.overall).toBeGreaterThanOrEqual(0);
      expect(summary.base.overall).toBeGreaterThanOrEqual(0);

      // the phases print the notebook's headings around the same work
      const p5: string[] = [];
      expect(await phase5([...common, ...small, "--out", out, "--run-dir", run, "--quiet"], (l) => p5.push(l))).toBe(0);
      expect(p5[0]).toContain("Part 5");
      const p6: string[] = [];
      expect(await phase6([...args], (l) => p6.push(l))).toBe(0);
      expect(p6[0]).toContain("Part 6");
      expect(p6.some((l) => l.includes("总结"))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("npm scripts (the way in without sh, e.g. on Windows)", () => {
  const root = new URL("..", import.meta.url).pathname;
  const scripts = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts as Record<string, string>;

  test("each starts its program directly (no deno task, no sh) and passes flags after --", () => {
    const names = Object.keys(scripts).filter((n) => n !== "test");
    expect(names.sort()).toEqual(["bench", "chat", "data", "demo", "eval", "parity", "show-masking", "train"]);
    for (const name of names) {
      expect(scripts[name]).toMatch(/^(deno run -A|bun run) [\w/]+\.ts$/);
      const r = spawnSync("npm", ["run", "-s", name, "--", "--help"], { cwd: root, encoding: "utf8", timeout: 60_000 });
      expect({ name, status: r.status }).toEqual({ name, status: 0 });
      expect(r.stdout.toLowerCase()).toContain("usage:");
    }
  }, 300_000);
});
