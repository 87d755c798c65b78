/**
 * The argument checks of every op, written once for both backends: which buffers an op reads and writes, how
 * many elements of which dtype each must hold for the sizes it is given, and the conditions on its other
 * arguments (heads dividing the channels, an output that must not alias an input, AdamW's step count, …).
 *
 * {@link installArgChecks} puts them in front of a backend's ops (the CPU reference's constructor and the
 * WebGPU backend's call it), so an op's body can take its arguments as valid: a wrong size fails here, naming
 * the op, the argument, its label and both sizes, before any kernel runs or any loop reads out of range.
 * What a check cannot know without reading the data (a token id outside the vocabulary, a target outside
 * [0, V)) stays with the op.
 * @module
 */

import { ACTIVATIONS, type Backend, type Buf, type DType, OP_NAMES, type OpArgs, type OpName } from "./backend.ts";

/** A buffer an op touches: its argument name, the buffer (absent: an optional argument left out), its size. */
type Need = readonly [name: string, buf: Buf | undefined, elements: number, dtype?: DType];

/** What op `K` requires: its buffers, and conditions on its other arguments (a message when one fails). */
type Spec<K extends OpName> = (a: OpArgs<K>, be: Backend) => { bufs: readonly Need[]; problem?: string };

function heads(C: number, NH: number): string | undefined {
  return Number.isInteger(NH) && NH > 0 && C % NH === 0 ? undefined : `C ${C} is not divisible by NH ${NH}`;
}

function activation(a: string | undefined): string | undefined {
  return a === undefined || (ACTIVATIONS as readonly string[]).includes(a)
    ? undefined
    : `unknown activation ${JSON.stringify(a)}`;
}

/** The floats of attention's saved buffer on `be` (see `Backend.attentionSavedLength`). */
function saved(be: Backend, B: number, T: number, NH: number): number {
  return be.attentionSavedLength?.(B, T, NH) ?? B * NH * T * T;
}

/** Every op's requirements (see the module comment). */
const SPECS: { [K in OpName]: Spec<K> } = {
  add: (a) => ({ bufs: [["out", a.out, a.n], ["a", a.a, a.n], ["b", a.b, a.n]] }),
  scale: (a) => ({ bufs: [["buf", a.buf, a.n]] }),
  geluForward: (a) => ({
    bufs: [["out", a.out, a.n], ["inp", a.inp, a.n], ["deriv", a.deriv, a.n]],
    problem: activation(a.activation),
  }),
  geluBackward: (a) => ({
    bufs: [["dinp", a.dinp, a.n], ["inp", a.inp, a.n], ["dout", a.dout, a.n], ["deriv", a.deriv, a.n]],
    problem: activation(a.activation),
  }),
  dropoutForward: (a) => ({ bufs: [["out", a.out, a.n], ["inp", a.inp, a.n]] }),
  dropoutBackward: (a) => ({ bufs: [["dinp", a.dinp, a.n], ["dout", a.dout, a.n]] }),
  embeddingForward: (a) => ({
    bufs: [
      ["out", a.out, a.B * a.T * a.C],
      ["ids", a.ids, a.B * a.T, "i32"],
      ["wte", a.wte, 0],
      ["wpe", a.wpe, a.positions ? 0 : ((a.pos0 ?? 0) + a.T) * a.C],
      ["positions", a.positions, a.B * a.T, "i32"],
    ],
  }),
  embeddingBackward: (a) => ({
    bufs: [
      ["dwte", a.dwte, a.V * a.C],
      ["dwpe", a.dwpe, a.positions ? 0 : a.T * a.C],
      ["dout", a.dout, a.B * a.T * a.C],
      ["ids", a.ids, a.B * a.T, "i32"],
      ["positions", a.positions, a.B * a.T, "i32"],
    ],
  }),
  layernormForward: (a) => ({
    bufs: [
      ["out", a.out, a.N * a.C],
      ["inp", a.inp, a.N * a.C],
      ["weight", a.weight, a.C],
      ["bias", a.bias, a.C],
      ["mean", a.mean, a.N],
      ["rstd", a.rstd, a.N],
    ],
  }),
  layernormBackward: (a) => ({
    bufs: [
      ["dinp", a.dinp, a.N * a.C],
      ["dout", a.dout, a.N * a.C],
      ["inp", a.inp, a.N * a.C],
      ["dweight", a.dweight, a.C],
      ["dbias", a.dbias, a.C],
      ["weight", a.weight, a.C],
      ["mean", a.mean, a.N],
      ["rstd", a.rstd, a.N],
    ],
  }),
  matmul: (a) => ({
    bufs: [["out", a.out, a.M * a.N], ["a", a.a, a.M * a.K], ["b", a.b, a.K * a.N], ["bias", a.bias, a.N]],
    problem: a.out === a.a || a.out === a.b ? "out must not alias a or b" : undefined,
  }),
  sumRows: (a) => ({ bufs: [["out", a.out, a.N], ["inp", a.inp, a.M * a.N]] }),
  attentionForward: (a, be) => ({
    bufs: [
      ["out", a.out, a.B * a.T * a.C],
      ["att", a.att, saved(be, a.B, a.T, a.NH)],
      ["qkv", a.qkv, a.B * a.T * 3 * a.C],
      ["mask", a.mask, a.B * a.T, "i32"],
    ],
    problem: heads(a.C, a.NH),
  }),
  attentionBackward: (a, be) => ({
    bufs: [
      ["dqkv", a.dqkv, a.B * a.T * 3 * a.C],
      ["dout", a.dout, a.B * a.T * a.C],
      ["qkv", a.qkv, a.B * a.T * 3 * a.C],
      ["att", a.att, saved(be, a.B, a.T, a.NH)],
      ["mask", a.mask, a.B * a.T, "i32"],
    ],
    problem: heads(a.C, a.NH),
  }),
  attentionCached: (a) => ({
    bufs: [
      ["out", a.out, a.B * a.Tn * a.C],
      ["qkv", a.qkv, a.B * a.Tn * 3 * a.C],
      ["kcache", a.kcache, a.B * a.Tmax * a.C],
      ["vcache", a.vcache, a.B * a.Tmax * a.C],
      ["mask", a.mask, a.B * a.Tmax, "i32"],
    ],
    problem: heads(a.C, a.NH) ??
      (a.pos0 < 0 || a.pos0 + a.Tn > a.Tmax
        ? `positions ${a.pos0}…${a.pos0 + a.Tn - 1} exceed the cache (Tmax ${a.Tmax})`
        : undefined),
  }),
  crossEntropy: (a) => ({
    bufs: [
      ["losses", a.losses, a.N],
      ["dlogits", a.dlogits, a.N * a.V],
      ["logits", a.logits, a.N * a.V],
      ["targets", a.targets, a.N, "i32"],
      ["correct", a.correct, a.N],
    ],
  }),
  sum: (a) => ({ bufs: [["out", a.out, 1], ["inp", a.inp, a.n]] }),
  globalNorm: (a) => ({ bufs: [["out", a.out, 1], ...a.bufs.map((b, j) => [`bufs[${j}]`, b, 0] as const)] }),
  adamw: (a) => ({
    bufs: [["param", a.param, a.n], ["grad", a.grad, a.n], ["m", a.m, a.n], ["v", a.v, a.n], ["norm", a.norm, 1]],
    problem: !Number.isInteger(a.step) || a.step < 1
      ? `step must count from 1, got ${a.step}`
      : a.norm && a.maxNorm === undefined
      ? "norm is given without maxNorm"
      : undefined,
  }),
};

/** Check op `op`'s arguments on `be`; throws naming the op, the argument and what was expected. */
export function checkOpArgs<K extends OpName>(op: K, args: OpArgs<K>, be: Backend): void {
  const { bufs, problem } = (SPECS[op] as Spec<K>)(args, be);
  if (problem !== undefined) throw new Error(`Cannot run ${op}: ${problem}`);
  for (const [name, buf, n, dtype = "f32"] of bufs) {
    if (buf === undefined) continue;
    const label = (buf as { label?: string }).label;
    const what = label ? `${name} ("${label}")` : name;
    if (buf.dtype !== dtype) throw new Error(`Cannot run ${op}: ${what} is ${buf.dtype}, expected ${dtype}`);
    if (buf.length < n) throw new Error(`Cannot run ${op}: ${what} has ${buf.length} elements, needs ${n}`);
  }
}

/**
 * Put {@link checkOpArgs} in front of every op of `be` (own properties that shadow its methods, so a
 * subclass's override is the one checked). Call it once, from a backend's constructor.
 */
export function installArgChecks(be: Backend): void {
  const t = be as unknown as Record<string, unknown>;
  for (const op of OP_NAMES) {
    const fn = t[op];
    if (typeof fn !== "function") continue;
    const call = fn.bind(be) as (args: unknown) => unknown;
    t[op] = (args: OpArgs<typeof op>) => {
      checkOpArgs(op, args, be);
      return call(args);
    };
  }
}
