/**
 * The CPU backend's op timer (`GPT2_SFT_PROFILE=1` on the CPU; src/backend/profile.ts): every op call is
 * counted under its name, matmuls under their shape and layout, results unchanged, and the report and
 * table are what `train`/`eval`/`demo` print. (The WebGPU profiler is tested in webgpu_ops_test.ts.)
 */

import { describe, expect, test } from "bun:test";
import { OP_NAMES } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { profileReport } from "../src/backend/mod.ts";
import { formatProfile, matmulNote, mergeMatmulRows } from "../src/backend/profile.ts";

describe("op profile (CPU)", () => {
  test("OP_NAMES lists every op of the backend", () => {
    const be = new CpuBackend({ matmul: "reference" });
    for (const op of OP_NAMES) expect(typeof (be as unknown as Record<string, unknown>)[op]).toBe("function");
    expect(OP_NAMES.length).toBe(19);
  });

  test("matmulNote keys a product by shape and layout", () => {
    expect(matmulNote({ M: 2, N: 3, K: 4 })).toBe("2×3×4");
    expect(matmulNote({ M: 2, N: 3, K: 4, transA: true, transB: true, accumulate: true })).toBe("2×3×4 Aᵀ Bᵀ +=");
  });

  test("a whole run's matmuls merge over the token dimension (M, or K for Aᵀ·B); long tables fold", () => {
    const rows = mergeMatmulRows([
      { kernel: "matmul 57×64×256 Bᵀ", calls: 1, ms: 1 },
      { kernel: "matmul 60×64×256 Bᵀ", calls: 2, ms: 2 },
      { kernel: "matmul_tiled.wgsl:main 64×256×2096 Aᵀ +=", calls: 1, ms: 4 },
      { kernel: "matmul_tiled.wgsl:main 64×256×2144 Aᵀ +=", calls: 1, ms: 4 },
      { kernel: "matmul_tiled.wgsl:main 5×7×3000 split 6", calls: 1, ms: 0.5 },
      { kernel: "geluForward", calls: 3, ms: 5 },
    ]);
    expect(rows).toEqual([
      { kernel: "matmul_tiled.wgsl:main 64×256×K Aᵀ +=", calls: 2, ms: 8 },
      { kernel: "geluForward", calls: 3, ms: 5 },
      { kernel: "matmul M×64×256 Bᵀ", calls: 3, ms: 3 },
      { kernel: "matmul_tiled.wgsl:main M×7×3000 split 6", calls: 1, ms: 0.5 },
    ]);
    const many = Array.from({ length: 40 }, (_, i) => ({ kernel: `op${i}`, calls: 1, ms: 40 - i }));
    const table = formatProfile(many, { maxRows: 5 }).split("\n");
    expect(table.length).toBe(2 + 5 + 1 + 1); // title, header, 5 rows, "(35 more)", total
    expect(table[7]).toMatch(/^\(35 more\)\s+35\s+630\.000\s+76\.8 %$/);
    expect(table[8]).toMatch(/^total\s+820\.000$/);
  });

  test("ops are counted and timed, matmuls by shape; results as without profiling", async () => {
    const plain = new CpuBackend({ matmul: "reference" });
    expect(plain.profiling).toBe(false);
    await expect(plain.profile()).rejects.toThrow(/without `profile`/);
    expect(await profileReport(plain)).toBeUndefined();

    const be = new CpuBackend({ matmul: "reference", profile: true });
    expect(be.profiling).toBe(true);
    expect(be.description).toContain("profiling");
    const a = be.upload(new Float32Array([1, 2, 3, 4, 5, 6]));
    const b = be.upload(new Float32Array([1, 0, 0, 1, 1, 1]));
    const out = be.alloc(4);
    be.matmul({ out, a, b, M: 2, N: 2, K: 3 });
    be.matmul({ out, a, b, M: 2, N: 2, K: 3 });
    be.matmul({ out, a: b, b: a, M: 2, N: 2, K: 3, transA: true, transB: true, accumulate: true });
    be.geluForward({ out: a, inp: b, n: 6 });
    const rows = await be.profile();
    const calls = Object.fromEntries(rows.map((r) => [r.kernel, r.calls]));
    expect(calls).toEqual({ "matmul 2×2×3": 2, "matmul 2×2×3 Aᵀ Bᵀ +=": 1, geluForward: 1 });
    expect(rows.every((r) => r.ms >= 0)).toBe(true);
    for (let i = 1; i < rows.length; i++) expect(rows[i - 1]!.ms).toBeGreaterThanOrEqual(rows[i]!.ms);
    // the products are still right: a·b = [[4, 5], [10, 11]], then += bᵀ·aᵀ (stored transposed) = [[4, 10], [5, 11]]
    expect(Array.from(await be.read(out))).toEqual([8, 15, 15, 22]);
    // the table and the report the CLIs print
    expect(formatProfile(rows)).toMatch(/matmul 2×2×3\s+2 /);
    // the title, then (in whatever order the timings give) the product merged over M: 2 calls
    const report = (await profileReport(be))!;
    expect(report).toMatch(/^Time by op on the CPU \(GPT2_SFT_PROFILE=1\)[^\n]*\n/);
    expect(report).toMatch(/\nmatmul M×2×3 +2 /);
    await be.profile({ reset: true });
    expect(await be.profile()).toEqual([]);
  });
});
