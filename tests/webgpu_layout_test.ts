/**
 * The kernel interface read from WGSL (src/backend/webgpu/layout.ts): `struct Params` fields, storage
 * bindings, overrides and entry points, and the errors for a uniform or binding passed under a name the
 * kernel does not declare, or left out. No GPU needed: the parser and the uniform packing are plain code.
 */

import { describe, expect, test } from "bun:test";
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
    ]);
    expect(K.matmulBatched.src.layout.params.length).toBe(20);
    for (const k of Object.values(K)) expect(k.src.layout.entries.has(k.entry)).toBe(true);
  });
});
