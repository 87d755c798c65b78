/**
 * The kernel interface read from WGSL (src/backend/webgpu/layout.ts): `struct Params` fields, storage
 * bindings, overrides and entry points, and the errors for a uniform or binding passed under a name the
 * kernel does not declare, or left out. No GPU needed: the parser and the uniform packing are plain code.
 */

import { describe, expect, test } from "bun:test";
import { COMMON, linkKernel, parseHelpers } from "../src/backend/webgpu/common.ts";
import { K } from "../src/backend/webgpu/kernels.ts";
import { checkOverrides, orderBindings, packParams, parseKernelLayout } from "../src/backend/webgpu/layout.ts";

const SRC = `// demo.wgsl — a kernel header mentioning struct Params { x: vec4<f32> } in a comment only.
struct Params {
  n: u32,   // elements
  off: i32,
  s: f32,
}

override ACCUMULATE: bool = false;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
/* @group(0) @binding(3) var<storage, read> commented_out: array<f32>; */

@compute @workgroup_size(64, 1)
fn first_main(@builtin(global_invocation_id) gid: vec3<u32>) {}

@compute @workgroup_size(WG)
fn second_main() {}

fn helper() {}
`;

describe("kernel layout from WGSL", () => {
  test("fields, bindings, overrides and entry points are read in declaration order; comments are ignored", () => {
    const l = parseKernelLayout("demo.wgsl", SRC);
    expect(l.params).toEqual([{ name: "n", type: "u32" }, { name: "off", type: "i32" }, { name: "s", type: "f32" }]);
    expect(l.bindings).toEqual([{ name: "inp", writable: false }, { name: "out", writable: true }]);
    expect([...l.overrides]).toEqual(["ACCUMULATE", "WG"]);
    expect([...l.entries]).toEqual(["first_main", "second_main"]);
  });

  test("a malformed interface is an error naming the file and the declaration", () => {
    const bad = (from: string, to: string) => () => parseKernelLayout("demo.wgsl", SRC.replace(from, to));
    expect(bad("struct Params {\n", "struct Other {\n")).toThrow(/Cannot load kernel demo\.wgsl: no "struct Params"/);
    expect(bad("off: i32", "off: vec2<f32>")).toThrow(
      /demo\.wgsl: struct Params field "off" is vec2<f32>, expected u32/,
    );
    expect(bad("off: i32", "n: i32")).toThrow(/declares field "n" twice/);
    expect(bad("@binding(2)", "@binding(3)")).toThrow(/demo\.wgsl: bindings are not numbered 1 … 2 \(binding 2/);
    expect(bad("@binding(2)", "@binding(1)")).toThrow(/binding 1 is declared twice \("inp", "out"\)/);
    expect(bad("var<uniform> p: Params", "var<uniform> p: Other")).toThrow(/binding 0 must be/);
    expect(bad("@group(0) @binding(2)", "@group(1) @binding(2)")).toThrow(/"out" is in group 1/);
  });

  test("uniforms are packed by name, 4 bytes each in the struct's order and types", () => {
    const l = parseKernelLayout("demo.wgsl", SRC);
    const view = new DataView(new ArrayBuffer(16));
    packParams(l, "demo.wgsl:first_main", { s: 0.5, off: -3, n: 7 }, view);
    expect([view.getUint32(0, true), view.getInt32(4, true), view.getFloat32(8, true)]).toEqual([7, -3, 0.5]);
  });

  test("a missing or unknown uniform, binding or override is an error naming the kernel and the name", () => {
    const l = parseKernelLayout("demo.wgsl", SRC);
    const view = new DataView(new ArrayBuffer(16));
    const label = "demo.wgsl:first_main";
    expect(() => packParams(l, label, { n: 1, s: 1 }, view)).toThrow(
      'Cannot dispatch demo.wgsl:first_main: parameter "off" of struct Params is missing',
    );
    expect(() => packParams(l, label, { n: 1, off: 0, s: 1, scale: 2 }, view)).toThrow(
      'Cannot dispatch demo.wgsl:first_main: unknown parameter "scale" (struct Params has n, off, s)',
    );
    expect(orderBindings(l, label, { out: "o", inp: null })).toEqual([null, "o"]);
    expect(() => orderBindings(l, label, { inp: "i" })).toThrow(
      'Cannot dispatch demo.wgsl:first_main: binding 2 "out" is missing (pass null for a placeholder)',
    );
    expect(() => orderBindings(l, label, { inp: "i", out: "o", dout: "d" })).toThrow(
      'Cannot dispatch demo.wgsl:first_main: unknown binding "dout" (the kernel binds inp, out)',
    );
    expect(() => checkOverrides(l, label, { ACCUMULATE: 1 })).not.toThrow();
    expect(() => checkOverrides(l, label, { HAS_BIAS: 1 })).toThrow(
      'Cannot dispatch demo.wgsl:first_main: unknown override "HAS_BIAS" (the kernel declares ACCUMULATE, WG)',
    );
  });

  test("every kernel of the registry loads, its layout read from its own file", () => {
    expect(K.adamw.src.layout.params.map((f) => f.name)).toEqual([
      "n",
      "lr",
      "beta1",
      "beta2",
      "eps",
      "weight_decay",
      "bc1",
      "bc2",
      "max_norm",
      "one_minus_beta1",
      "one_minus_beta2",
    ]);
    expect(K.crossEntropy.src.layout.bindings.map((b) => `${b.name}:${b.writable ? "rw" : "r"}`)).toEqual([
      "logits:rw",
      "targets:r",
      "losses:rw",
      "dlogits:rw",
      "correct:rw",
    ]);
    expect(K.matmulBatched.src.layout.params.length).toBe(20);
    for (const k of Object.values(K)) expect(k.src.layout.entries.has(k.entry)).toBe(true);
  });
});

describe("common.wgsl helpers", () => {
  const HELPERS = parseHelpers(`// header of the file
// (not attached to a helper)

// the first helper
fn base(x: u32) -> u32 {
  return x + 1u;
}

// uses base
fn derived(x: u32) -> u32 {
  return base(base(x));
}

fn other() -> f32 {
  return 0.0;
}
`);
  const kernelUsing = (line: string, body: string) =>
    `// k.wgsl — a kernel.\n//\n${line}\n//\n@compute @workgroup_size(1)\nfn main() {\n${body}\n}\n`;

  test("helpers are read with the comment above them and the helpers they call", () => {
    expect([...HELPERS.keys()]).toEqual(["base", "derived", "other"]);
    expect(HELPERS.get("derived")!.calls).toEqual(["base"]);
    expect(HELPERS.get("base")!.text).toBe("// the first helper\nfn base(x: u32) -> u32 {\n  return x + 1u;\n}");
  });

  test("a kernel gets the helpers it names and those they call, appended in common.wgsl's order", () => {
    const code = kernelUsing("// Uses from common.wgsl (appended when loaded): derived.", "  let y = derived(1u);");
    const linked = linkKernel("k.wgsl", code, HELPERS);
    expect(linked.startsWith(code.trimEnd())).toBe(true);
    const tail = linked.slice(code.trimEnd().length);
    expect(tail.indexOf("fn base(")).toBeGreaterThan(0);
    expect(tail.indexOf("fn derived(")).toBeGreaterThan(tail.indexOf("fn base("));
    expect(tail).not.toContain("fn other(");
    const none = kernelUsing("// no helpers", "");
    expect(linkKernel("k.wgsl", none, HELPERS)).toBe(none);
  });

  test("the header line must match the code: errors name the kernel and the helper", () => {
    const link = (line: string, body: string) => () => linkKernel("k.wgsl", kernelUsing(line, body), HELPERS);
    expect(link("// Uses from common.wgsl: nope.", "")).toThrow(
      'Cannot load kernel k.wgsl: common.wgsl has no function "nope" (it has base, derived, other)',
    );
    expect(link("// no line", "  let y = other();")).toThrow(
      'Cannot load kernel k.wgsl: it calls other from common.wgsl without naming it in its "Uses from common.wgsl" line',
    );
    expect(link("// Uses from common.wgsl: base, other.", "  let y = base(1u);")).toThrow(
      'Cannot load kernel k.wgsl: its "Uses from common.wgsl" line names other, which it does not call',
    );
    expect(link("// Uses from common.wgsl: base.", "  let y = base(1u);\n}\nfn other() -> f32 {\n  return 1.0;"))
      .toThrow(
        "Cannot load kernel k.wgsl: it defines other, which common.wgsl provides",
      );
  });

  test("kernels/common.wgsl holds the reductions, the dropout hash and the attention mask test; no kernel keeps a copy", () => {
    expect([...COMMON.keys()]).toEqual(["lowbias32", "dropout_hash", "key_visible", "workgroup_max", "workgroup_sum"]);
    const compiled = [...new Set(Object.values(K).map((k) => k.src))];
    for (const f of compiled) {
      for (const name of COMMON.keys()) {
        // each helper at most once in what the device compiles: appended, never also in the file
        expect(f.code.split(`fn ${name}(`).length).toBeLessThanOrEqual(2);
      }
    }
    expect(K.crossEntropy.src.code).toContain("fn workgroup_max(");
    expect(K.dropoutFwd.src.code).toContain("fn lowbias32(");
    expect(K.add.src.code).not.toContain("common.wgsl");
  });
});
