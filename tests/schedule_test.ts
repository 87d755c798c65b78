// The notebook's LR schedule (torch LinearLR warm-up), step counting, and the training metrics log and
// console formatting (src/train/metrics.ts shares this file: it is the other half of the training loop's
// bookkeeping).
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lrAt, totalSteps } from "../src/train/schedule.ts";
import { lastLr, torchRecursiveLr } from "./helpers/schedule.ts";
import {
  formatDuration,
  formatEpochSummary,
  formatExp,
  formatFixed,
  formatStepLine,
  formatValLine,
  groupThousands,
  lossSeries,
  MetricsLog,
  readMetrics,
} from "../src/train/metrics.ts";

const NOTEBOOK = { baseLr: 5e-5, warmupSteps: 50, startFactor: 0.1 };

describe("schedule", () => {
  // Expected values computed with python3 3.11 by replaying torch's LinearLR formulas in plain floats
  // (torch is not installed here): closed form base*(s + (e-s)*min(T,k)/T), and the recursive get_lr()
  // lr *= 1 + (e-s)/(T*s + (k-1)*(e-s)). Tolerance 0: the same IEEE double operations in the same order
  // give the same bits in Python and JavaScript.
  const closed: [number, number][] = [
    [0, 5e-06],
    [1, 5.9e-06],
    [25, 2.7500000000000004e-05],
    [49, 4.91e-05],
    [50, 5e-05],
    [51, 5e-05],
    [999, 5e-05],
  ];
  const recursive: [number, number][] = [
    [0, 5e-06],
    [1, 5.9e-06],
    [25, 2.7500000000000004e-05],
    [49, 4.909999999999999e-05],
    [50, 4.999999999999998e-05],
    [51, 4.999999999999998e-05],
    [999, 4.999999999999998e-05],
  ];

  test("lrAt is torch's closed form, bit for bit", () => {
    for (const [k, lr] of closed) expect(lrAt(k, NOTEBOOK)).toBe(lr);
  });

  test("torchRecursiveLr is torch's get_lr() recursion, bit for bit", () => {
    for (const [k, lr] of recursive) expect(torchRecursiveLr(k, NOTEBOOK)).toBe(lr);
  });

  test("closed form and recursion differ by under 1e-15 relative over the notebook's 1000 steps", () => {
    // Measured in Python: at most 6.4e-16 relative (a few ulp), so 1e-15 is the bound to hold.
    for (let k = 0; k <= 1000; k++) {
      const a = lrAt(k, NOTEBOOK), b = torchRecursiveLr(k, NOTEBOOK);
      expect(Math.abs(a - b) / a).toBeLessThan(1e-15);
    }
  });

  test("get_last_lr after step n is the lr of step n (what the notebook prints)", () => {
    // The notebook's first log line is "Step   20 | ... | LR: 2.30e-05".
    expect(lastLr(20, NOTEBOOK)).toBe(2.3e-05);
    expect(formatExp(lastLr(20, NOTEBOOK), 2)).toBe("2.30e-05");
    expect(formatExp(lastLr(1000, NOTEBOOK), 2)).toBe("5.00e-05");
  });

  test("startFactor defaults to the notebook's 0.1, warmupSteps 0 is constant", () => {
    expect(lrAt(0, { baseLr: 5e-5, warmupSteps: 50 })).toBe(5e-06);
    expect(lrAt(0, { baseLr: 1e-3, warmupSteps: 0 })).toBe(1e-3);
    expect(() => lrAt(-1, NOTEBOOK)).toThrow("Invalid schedule step");
  });

  test("totalSteps = min(ceil(examples/batch)*epochs, maxSteps)", () => {
    // Notebook: 8000 examples, batch 4, 3 epochs → 6000 estimated, MAX_STEPS 1000.
    expect(totalSteps({ examples: 8000, batchSize: 4, epochs: 3, maxSteps: 1000 })).toBe(1000);
    expect(totalSteps({ examples: 8000, batchSize: 4, epochs: 3, maxSteps: null })).toBe(6000);
    expect(totalSteps({ examples: 10, batchSize: 4, epochs: 2 })).toBe(6); // last partial batch kept
    expect(() => totalSteps({ examples: 10, batchSize: 0, epochs: 1 })).toThrow("batchSize");
    // gradient accumulation: ceil(batches / gradAccum) optimizer steps an epoch
    expect(totalSteps({ examples: 10, batchSize: 2, epochs: 2, gradAccum: 2 })).toBe(6);
    expect(totalSteps({ examples: 8000, batchSize: 2, epochs: 3, gradAccum: 2, maxSteps: null })).toBe(6000);
    expect(() => totalSteps({ examples: 10, batchSize: 2, epochs: 1, gradAccum: 0 })).toThrow("gradAccum");
  });

  test("decays after the warm-up: linear and cosine to 0 at the last step, as transformers' schedules", () => {
    const base = { baseLr: 1e-3, warmupSteps: 2, startFactor: 0.1, totalSteps: 10 };
    for (const decay of ["linear", "cosine"] as const) {
      const o = { ...base, decay };
      expect(lrAt(0, o)).toBe(lrAt(0, base)); // the warm-up is the notebook's
      expect(lrAt(1, o)).toBe(lrAt(1, base));
      expect(lrAt(2, o)).toBeCloseTo(1e-3, 15); // its end: the full rate
      expect(lrAt(10, o)).toBe(0);
      expect(lrAt(12, o)).toBe(0); // never negative past the end
    }
    expect(lrAt(6, { ...base, decay: "linear" })).toBeCloseTo(5e-4, 15); // halfway through the decay
    expect(lrAt(4, { ...base, decay: "linear" })).toBeCloseTo(7.5e-4, 15);
    expect(lrAt(6, { ...base, decay: "cosine" })).toBeCloseTo(5e-4, 15); // cos(π/2) = 0: half the rate
    expect(lrAt(4, { ...base, decay: "cosine" })).toBeCloseTo(1e-3 * 0.5 * (1 + Math.cos(Math.PI / 4)), 15);
    expect(lrAt(6, { ...base, decay: "constant" })).toBe(lrAt(6, base));
    expect(() => lrAt(5, { baseLr: 1e-3, warmupSteps: 2, decay: "linear" })).toThrow("needs totalSteps");
  });
});

describe("python number formatting", () => {
  // Expected strings from python3: format(v, spec). Python rounds the exact binary value half to even.
  const cases: [number, "f" | "e", number, string][] = [
    [2.3e-05, "e", 2, "2.30e-05"],
    [0.125, "f", 2, "0.12"],
    [12.25, "f", 1, "12.2"],
    [6.25, "f", 1, "6.2"], // toFixed says 6.3
    [0.5, "f", 0, "0"],
    [2.5, "f", 0, "2"],
    [9.5, "f", 0, "10"],
    [9.995, "f", 2, "9.99"],
    [9.9999e-5, "e", 2, "1.00e-04"],
    [-0.00001, "f", 4, "-0.0000"],
    [0, "e", 2, "0.00e+00"],
    [1e300, "e", 2, "1.00e+300"],
    [5e-324, "e", 2, "4.94e-324"],
    [123456789, "f", 4, "123456789.0000"],
    [1.2345e-7, "e", 2, "1.23e-07"],
    [0.000125, "e", 2, "1.25e-04"],
    [1.5, "e", 0, "2e+00"],
    [2.5e10, "e", 0, "2e+10"],
    [1.23456, "f", 4, "1.2346"],
    [5.9e-06, "e", 2, "5.90e-06"],
  ];
  test("formatFixed / formatExp match Python", () => {
    for (const [v, kind, d, want] of cases) expect(kind === "f" ? formatFixed(v, d) : formatExp(v, d)).toBe(want);
    expect(formatFixed(NaN, 4)).toBe("nan");
    expect(formatExp(-Infinity, 2)).toBe("-inf");
  });
  test("groupThousands and formatDuration", () => {
    expect(groupThousands(1234567)).toBe("1,234,567");
    expect(groupThousands(999)).toBe("999");
    expect(formatDuration(42)).toBe("42s");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(3720)).toBe("1h02m");
  });
});

describe("metrics log", () => {
  test("the --eval-every line lines up with the step lines", () => {
    expect(formatValLine({ step: 20, totalSteps: 1000, valLoss: 1.23456 })).toBe("Step   20/1000 | Val loss: 1.2346");
    expect(formatValLine({ step: 20, totalSteps: 1000, valLoss: 1 }).indexOf(" | ")).toBe(
      formatStepLine({ step: 20, totalSteps: 1000, loss: 1, lr: 1e-5 }).indexOf(" | "),
    );
  });

  test("console lines in the notebook's style", () => {
    expect(formatStepLine({ step: 20, loss: 1.23456, lr: 2.3e-05 })).toBe("Step   20 | Loss: 1.2346 | LR: 2.30e-05");
    expect(
      formatStepLine({
        step: 20,
        totalSteps: 1000,
        loss: 1.2,
        lr: 5e-5,
        gradNorm: 0.8731,
        tokensPerS: 1234.4,
        supervisedTokens: 456,
        etaS: 185,
      }),
    ).toBe("Step   20/1000 | Loss: 1.2000 | LR: 5.00e-05 | Grad: 0.873 | 1,234 tok/s | Sup: 456 | ETA 3m05s");
    expect(formatEpochSummary({ epoch: 1, epochs: 3, trainLoss: 1.5, valLoss: 1.25 })).toBe(
      "\nEpoch 1/3 completed\n  Train loss: 1.5000\n  Val loss:   1.2500",
    );
    // a run without validation data (--train-file without --val-split) prints no "Val loss: nan"
    expect(formatEpochSummary({ epoch: 1, epochs: 3, trainLoss: 1.5 })).toBe(
      "\nEpoch 1/3 completed\n  Train loss: 1.5000",
    );
  });

  test("JSONL written per line, read back, truncated last line dropped", async () => {
    const dir = await mkdtemp(join(tmpdir(), "metrics-"));
    try {
      const path = join(dir, "sub", "metrics.jsonl");
      const log = MetricsLog.open(path);
      const common = { epoch: 1, lr: 5e-6, grad_norm: 2, tokens_per_s: 100, supervised_tokens: 10 };
      log.train({ step: 1, loss: 3.5, elapsed_s: 0.5, ...common });
      // Written immediately: readable before close.
      expect((await readFile(path, "utf8")).split("\n")).toHaveLength(2);
      log.train({ step: 2, loss: NaN, elapsed_s: 1, ...common });
      log.val({ epoch: 1, val_loss: 2.25, step: 2, train_loss: 3 });
      log.close();
      log.close(); // harmless
      expect(() => log.train({ step: 3, loss: 1, elapsed_s: 1, ...common })).toThrow("closed");
      await writeFile(path, (await readFile(path, "utf8")) + '{"type":"train","step":3,"lo', { flag: "w" });
      const entries = await readMetrics(path);
      expect(entries).toHaveLength(3);
      expect(entries[0]).toEqual({ type: "train", step: 1, loss: 3.5, elapsed_s: 0.5, ...common });
      const second = entries[1]!;
      expect(second.type === "train" && Number.isNaN(second.loss)).toBe(true);
      expect(entries[2]).toEqual({ type: "val", epoch: 1, val_loss: 2.25, step: 2, train_loss: 3 });
      const series = lossSeries(entries);
      expect(series.train.map((p) => p.step)).toEqual([1, 2]);
      expect(series.val).toEqual([{ step: 2, loss: 2.25 }]);

      await writeFile(path, '{"step":1,"loss":1}\nnot json\n{"step":2,"loss":1}\n');
      await expect(readMetrics(path)).rejects.toThrow("line 2 is not JSON");
      // Append mode keeps what is there.
      await writeFile(path, '{"step":1,"loss":1}\n');
      const again = MetricsLog.open(path, { append: true });
      again.val({ epoch: 1, val_loss: 1 });
      again.close();
      const back = await readMetrics(path);
      expect(back.map((e) => e.type)).toEqual(["train", "val"]);
      expect(lossSeries(back).val).toEqual([{ step: 1, loss: 1 }]); // placed at the last train step
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
