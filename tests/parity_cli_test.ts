// The parity check's own errors: a directory that is not a fixture is named, with what a fixture holds.
import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpuBackend } from "../src/backend/cpu.ts";
import { runParity } from "../src/parity.ts";

describe("parity on a directory that is not a fixture", () => {
  test("a missing or empty directory is named, with what a fixture holds", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sft-parity-"));
    try {
      for (const d of [join(dir, "missing"), dir]) {
        await expect(runParity(d, new CpuBackend())).rejects.toThrow(
          `Cannot check parity: ${d} is not a fixture directory (no ${join(d, "reference.json")}); a fixture holds`,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
