/**
 * Getting a WebGPU device under Bun (Dawn): the two warnings Dawn prints on Mesa's lavapipe at every
 * adapter request are filtered out of stderr, and anything else native code writes there comes through.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const ROOT = join(import.meta.dirname ?? ".", "..");

describe("gpu device under Bun", () => {
  test("no Dawn limit warnings on stderr; other native output kept", () => {
    const bun = join(ROOT, "node_modules", ".bin", "bun");
    const r = spawnSync(bun, [join(ROOT, "tests", "helpers", "dawn_stderr.ts")], { encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("webgpu: ");
    expect(r.stderr).not.toContain("artificially reduced");
    expect(r.stderr).toContain("native: a line that must come through");
  });
});
