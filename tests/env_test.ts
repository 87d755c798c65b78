/**
 * src/env.ts: every variable the program honours is read there into typed settings, with errors that name
 * the variable and what it expects; the library takes the settings as options (`createBackend`, the hub's
 * `env`, `colorEnabled`) and reads no variable itself.
 */

import { describe, expect, test } from "bun:test";
import process from "node:process";
import { createBackend } from "../src/backend/mod.ts";
import {
  backendSettings,
  ENV_VARIABLES,
  hubEnvironment,
  outputSettings,
  readSettings,
  readVariables,
} from "../src/env.ts";
import { resolveSettings } from "../src/io/hub_spec.ts";

describe("src/env.ts", () => {
  test("the backend variables become createBackend's options; unset or empty ones leave the defaults", () => {
    expect(backendSettings({})).toEqual({ profile: false, cpu: {}, webgpu: {} });
    const s = backendSettings({
      GPT2_SFT_CPU: "wasm",
      GPT2_SFT_CPU_THREADS: "2",
      GPT2_SFT_BLAS_LIB: "libblis.so",
      GPT2_SFT_MATMUL: "large",
      GPT2_SFT_ATTENTION: "flash",
      GPT2_SFT_PROFILE: "1",
    });
    expect(s).toEqual({
      profile: true,
      cpu: { matmul: "wasm", threads: 2, blasLib: "libblis.so" },
      webgpu: { matmul: "large", attention: "flash" },
    });
    expect(backendSettings({ GPT2_SFT_MATMUL: "", GPT2_SFT_ATTENTION: "", GPT2_SFT_PROFILE: "yes" })).toEqual({
      profile: false,
      cpu: {},
      webgpu: {},
    });
  });

  test("a malformed value is an error naming the variable and the values expected", () => {
    expect(() => backendSettings({ GPT2_SFT_MATMUL: "fast" })).toThrow(
      'Invalid kernel in GPT2_SFT_MATMUL "fast": expected one of tiled, large, tune, large-f16, naive',
    );
    expect(() => backendSettings({ GPT2_SFT_ATTENTION: "sdpa" })).toThrow(
      'Invalid kernel in GPT2_SFT_ATTENTION "sdpa": expected one of matmul, rows, flash',
    );
    expect(() => backendSettings({ GPT2_SFT_CPU_THREADS: "-1" })).toThrow(
      'GPT2_SFT_CPU_THREADS must be a whole number ≥ 1, got "-1"',
    );
  });

  test("the knobs without a measured benefit are not user values: GPT2_SFT_MATMUL=auto, the flush variables", () => {
    expect(() => backendSettings({ GPT2_SFT_MATMUL: "auto" })).toThrow(/GPT2_SFT_MATMUL "auto": expected one of/);
    expect(ENV_VARIABLES).not.toContain("GPT2_SFT_FLUSH_EVERY");
    expect(ENV_VARIABLES).not.toContain("GPT2_SFT_FLUSH_RAMP");
    expect(backendSettings({ GPT2_SFT_FLUSH_EVERY: "0", GPT2_SFT_FLUSH_RAMP: "yes" })).toEqual(backendSettings({}));
  });

  test("the hub variables pass through to resolveModel's env, which applies them as Python does", () => {
    const env = { HF_HUB_CACHE: "/c", HF_TOKEN: "hf_x", HF_HUB_OFFLINE: "1", GPT2_SFT_CPU: "wasm" };
    expect(hubEnvironment(env)).toEqual({ HF_HUB_CACHE: "/c", HF_TOKEN: "hf_x", HF_HUB_OFFLINE: "1" });
    const s = resolveSettings({ env: hubEnvironment(env) });
    expect(s.cacheDir).toBe("/c");
    expect(s.token).toBe("hf_x");
    expect(s.offline).toBe(true);
    // the library reads no environment: without `env`, the built-in defaults (a cache dir given here)
    expect(resolveSettings({ cacheDir: "/d" }).offline).toBe(false);
  });

  test("NO_COLOR, DEBUG and CI: set and not empty", () => {
    expect(outputSettings({})).toEqual({ noColor: false, debug: false, ci: false });
    expect(outputSettings({ NO_COLOR: "1", DEBUG: "x", CI: "true" })).toEqual({ noColor: true, debug: true, ci: true });
    expect(outputSettings({ NO_COLOR: "", DEBUG: "", CI: "" })).toEqual({ noColor: false, debug: false, ci: false });
  });

  test("readVariables reads the honoured names one at a time; readSettings puts the parts together", () => {
    const asked: string[] = [];
    const vars = readVariables((name) => {
      asked.push(name);
      return name === "GPT2_SFT_CPU" ? "reference" : name === "NO_COLOR" ? "1" : undefined;
    });
    expect(asked).toEqual([...ENV_VARIABLES]);
    expect(vars).toEqual({ GPT2_SFT_CPU: "reference", NO_COLOR: "1" });
    const s = readSettings(vars);
    expect(s.backend.cpu).toEqual({ matmul: "reference" });
    expect(s.hub).toEqual({});
    expect(s.noColor).toBe(true);
  });

  test("createBackend takes the settings as options", async () => {
    const be = await createBackend("cpu", backendSettings({ GPT2_SFT_CPU: "reference", GPT2_SFT_PROFILE: "1" }));
    try {
      expect(be.description).toBe("CPU reference (plain TypeScript loops, 1 thread), profiling");
    } finally {
      be.dispose();
    }
  });

  test("the library reads no variable: a variable counts only through readSettings", async () => {
    const old = process.env.GPT2_SFT_PROFILE;
    process.env.GPT2_SFT_PROFILE = "1";
    try {
      const be = await createBackend("cpu", { cpu: { matmul: "reference" } });
      expect(be.description).toBe("CPU reference (plain TypeScript loops, 1 thread)");
      be.dispose();
      expect(readSettings().backend.profile).toBe(true);
    } finally {
      if (old === undefined) delete process.env.GPT2_SFT_PROFILE;
      else process.env.GPT2_SFT_PROFILE = old;
    }
  });
});
