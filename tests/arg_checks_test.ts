/**
 * The argument checks both backends share (src/backend/arg_checks.ts): the same bad call fails the same way
 * on the CPU reference, the fast CPU backend and WebGPU, before the op runs.
 */

import { describe, expect, test } from "bun:test";
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { CpuReferenceBackend } from "../src/backend/cpu/reference.ts";
import { WebGpuBackend } from "../src/backend/webgpu.ts";
import { checkOpArgs } from "../src/backend/arg_checks.ts";
import { webgpuForTests } from "../src/testing/backends.ts";

/** Bad calls and the message each must give on every backend. */
function badCalls(be: Backend): [string, () => void, string][] {
  const small = be.alloc(3, "f32", "small"), big = be.alloc(64, "f32", "big"), ids = be.alloc(8, "i32", "ids");
  return [
    [
      "add",
      () => be.add({ out: small, a: big, b: big, n: 7 }),
      'Cannot run add: out ("small") has 3 elements, needs 7',
    ],
    [
      "matmul alias",
      () => be.matmul({ out: big, a: big, b: big, M: 2, N: 2, K: 2 }),
      "Cannot run matmul: out must not alias a or b",
    ],
    [
      "matmul size",
      () => be.matmul({ out: big, a: small, b: be.alloc(4), M: 2, N: 2, K: 2 }),
      'Cannot run matmul: a ("small") has 3 elements, needs 4',
    ],
    [
      "dtype",
      () => be.embeddingForward({ out: big, ids: big, wte: big, wpe: big, B: 1, T: 2, C: 4 }),
      'Cannot run embeddingForward: ids ("big") is f32, expected i32',
    ],
    [
      "heads",
      () => be.attentionForward({ out: big, att: big, qkv: big, B: 1, T: 1, C: 5, NH: 2 }),
      "Cannot run attentionForward: C 5 is not divisible by NH 2",
    ],
    [
      "cache",
      () =>
        be.attentionCached({
          out: big,
          qkv: big,
          kcache: big,
          vcache: big,
          B: 1,
          Tn: 2,
          pos0: 3,
          Tmax: 4,
          C: 4,
          NH: 1,
        }),
      "Cannot run attentionCached: positions 3…4 exceed the cache (Tmax 4)",
    ],
    [
      "adamw step",
      () =>
        be.adamw({
          param: big,
          grad: big,
          m: big,
          v: big,
          n: 4,
          lr: 1,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0,
          step: 0,
        }),
      "Cannot run adamw: step must count from 1, got 0",
    ],
    [
      "targets",
      () => be.crossEntropy({ losses: big, logits: big, targets: ids, N: 9, V: 2, scale: 1 }),
      'Cannot run crossEntropy: targets ("ids") has 8 elements, needs 9',
    ],
  ];
}

function expectMessages(calls: [string, () => void, string][]): void {
  for (const [what, call, message] of calls) {
    let got = "no error";
    try {
      call();
    } catch (e) {
      got = e instanceof Error ? e.message : String(e);
    }
    expect({ what, got }).toEqual({ what, got: message });
  }
}

describe("argument checks", () => {
  for (
    const [name, make] of [["CPU reference", () => new CpuReferenceBackend()], ["CPU", () => new CpuBackend()]] as const
  ) {
    test(`${name}: every bad call fails with the shared message`, () => {
      expectMessages(badCalls(make()));
    });
  }

  test("checkOpArgs accepts what the ops accept (optional buffers left out, views of the right size)", () => {
    const be = new CpuReferenceBackend();
    const b = be.alloc(8);
    expect(() => checkOpArgs("layernormForward", { out: b, inp: b, weight: b, bias: b, N: 2, C: 4, eps: 1e-5 }, be))
      .not.toThrow();
    expect(() => checkOpArgs("globalNorm", { out: b, bufs: [b, b] }, be)).not.toThrow();
  });
});

const available = await webgpuForTests("arg_checks_test");
test.skipIf(!available)("WebGPU: the same messages", async () => {
  const be = await WebGpuBackend.create();
  try {
    expectMessages(badCalls(be));
  } finally {
    be.dispose();
  }
}, 60_000);
