/** The CPU backend's buffer pool (CpuBackend.alloc/upload/free): reuse is invisible except for speed. */

import { describe, expect, test } from "bun:test";
import { CpuBackend, CpuBuf, cpuData } from "../src/backend/cpu.ts";

describe("CPU buffer pool", () => {
  test("a freed large buffer is reused: zero-filled, exact length, its old handle dead", () => {
    const be = new CpuBackend({ matmul: "reference" });
    const a = be.alloc(100_000);
    const backing = (a as CpuBuf).backing!;
    expect(backing.length).toBeGreaterThanOrEqual(100_000);
    cpuData(a).fill(7);
    be.free(a);
    expect(() => cpuData(a)).toThrow(/was freed/);
    const b = be.alloc(99_000); // the same size class
    expect((b as CpuBuf).backing).toBe(backing);
    expect(cpuData(b).length).toBe(99_000);
    expect(cpuData(b).every((v) => v === 0)).toBe(true);
  });

  test("a double free pools the array once; dtypes never mix; small arrays are not pooled", () => {
    const be = new CpuBackend({ matmul: "reference" });
    const a = be.alloc(50_000);
    be.free(a);
    be.free(a);
    const b = be.alloc(50_000), c = be.alloc(50_000);
    expect((b as CpuBuf).backing).not.toBe((c as CpuBuf).backing); // not both handed the same array
    be.free(b);
    const i = be.alloc(50_000, "i32");
    expect(cpuData(i)).toBeInstanceOf(Int32Array);
    expect((i as CpuBuf).backing).not.toBe((b as CpuBuf).backing);
    expect((be.alloc(100) as CpuBuf).backing).toBeUndefined();
  });

  test("upload copies into a pooled array: exact contents and length; read returns a copy", async () => {
    const be = new CpuBackend({ matmul: "reference" });
    const junk = be.alloc(70_000);
    cpuData(junk).fill(3);
    be.free(junk);
    const data = Float32Array.from({ length: 65_537 }, (_, k) => k);
    const u = be.upload(data);
    expect(cpuData(u).length).toBe(65_537);
    const back = await be.read(u);
    expect(back).toEqual(data);
    cpuData(u)[0] = -1;
    expect(back[0]).toBe(0);
  });
});
