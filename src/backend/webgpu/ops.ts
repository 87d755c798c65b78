/**
 * The WebGPU backend's ops other than matmul and attention (`matmul.ts`, `attention.ts`): each binds its
 * buffers (their sizes were checked by `arg_checks.ts`) and dispatches its kernel (see the kernel's header in `kernels/` for the maths, bindings and
 * dispatch layout). Ops whose output may alias an input (`add` with out = a, `crossEntropy` with
 * dlogits = logits, dropout in place) bind it once and tell the kernel with an override. The ops that meet
 * tensors larger than one binding (embedding: wte; cross-entropy: the logits; AdamW and the gradient norm:
 * the groups' chunks) bind them in windows of whole rows, one dispatch per window (`split.ts`).
 * @module
 */

import { type Activation, ACTIVATIONS, type OpArgs } from "../backend.ts";
import { dropoutParams } from "../dropout_hash.ts";
import { type GpuBuf, sameRange } from "./buffers.ts";
import { K } from "./kernels.ts";
import type { GpuRuntime } from "./runtime.ts";
import { rowRanges, rowWindow } from "./split.ts";

// ---------------------------------------------------------------------- elementwise

export function add(rt: GpuRuntime, args: OpArgs<"add">): void {
  const out = rt.buf(args.out, "add"), a = rt.buf(args.a, "add"), b = rt.buf(args.b, "add");
  const aIsOut = sameRange(a, out), bIsOut = sameRange(b, out);
  rt.dispatch(K.add, {
    params: { n: args.n },
    bufs: { a: aIsOut ? null : a, b: bIsOut ? null : b, out },
    groups: Math.ceil(args.n / 256),
    constants: { A_IS_OUT: +aIsOut, B_IS_OUT: +bIsOut, ACCUMULATE: +!!args.accumulate },
  });
}

export function scale(rt: GpuRuntime, args: OpArgs<"scale">): void {
  const b = rt.buf(args.buf, "scale");
  rt.dispatch(K.scale, { params: { n: args.n, s: args.s }, bufs: { buf: b }, groups: Math.ceil(args.n / 256) });
}

/** The gelu kernels' ACTIVATION selector for `activation` (its index in ACTIVATIONS; default gelu_new). */
function activationSelector(activation: Activation | undefined, op: string): number {
  const k = ACTIVATIONS.indexOf(activation ?? "gelu_new");
  if (k < 0) throw new Error(`${op}: unknown activation ${JSON.stringify(activation)}`);
  return k;
}

export function geluForward(rt: GpuRuntime, args: OpArgs<"geluForward">): void {
  const out = rt.buf(args.out, "geluForward"), inp = rt.buf(args.inp, "geluForward");
  rt.dispatch(K.geluFwd, {
    params: { n: args.n },
    bufs: { inp, out },
    groups: Math.ceil(args.n / 256),
    constants: { ACTIVATION: activationSelector(args.activation, "geluForward") },
  });
}

export function geluBackward(rt: GpuRuntime, args: OpArgs<"geluBackward">): void {
  const op = "geluBackward";
  const dinp = rt.buf(args.dinp, op), inp = rt.buf(args.inp, op), dout = rt.buf(args.dout, op);
  rt.dispatch(K.geluBwd, {
    params: { n: args.n },
    bufs: { inp, dout, dinp },
    groups: Math.ceil(args.n / 256),
    constants: { ACCUMULATE: +!!args.accumulate, ACTIVATION: activationSelector(args.activation, op) },
  });
}

export function dropoutForward(rt: GpuRuntime, args: OpArgs<"dropoutForward">): void {
  const op = "dropoutForward";
  const d = dropoutParams(args.p, args.seed, op);
  const out = rt.buf(args.out, op), inp = rt.buf(args.inp, op);
  const inPlace = sameRange(out, inp);
  rt.dispatch(K.dropoutFwd, {
    params: { n: args.n, key: d.key, threshold: d.threshold, scale: d.scale },
    bufs: { src: inPlace ? null : inp, dst: out },
    groups: Math.ceil(args.n / 256),
    constants: { IN_PLACE: +inPlace },
  });
}

export function dropoutBackward(rt: GpuRuntime, args: OpArgs<"dropoutBackward">): void {
  const op = "dropoutBackward";
  const d = dropoutParams(args.p, args.seed, op);
  const dinp = rt.buf(args.dinp, op), dout = rt.buf(args.dout, op);
  const inPlace = sameRange(dinp, dout);
  rt.dispatch(K.dropoutBwd, {
    params: { n: args.n, key: d.key, threshold: d.threshold, scale: d.scale },
    bufs: { src: inPlace ? null : dout, dst: dinp },
    groups: Math.ceil(args.n / 256),
    constants: { IN_PLACE: +inPlace, ACCUMULATE: +!!args.accumulate },
  });
}

// ---------------------------------------------------------------------- embedding

export function embeddingForward(rt: GpuRuntime, args: OpArgs<"embeddingForward">): void {
  const op = "embeddingForward";
  const { B, T, C } = args;
  const pos0 = args.pos0 ?? 0;
  const out = rt.buf(args.out, op), ids = rt.buf(args.ids, op, "i32");
  const wte = rt.buf(args.wte, op), wpe = rt.buf(args.wpe, op);
  const positions = args.positions ? rt.buf(args.positions, op, "i32") : null;
  const V = Math.floor(wte.length / C);
  // one dispatch per window of wte's rows: the first writes every output, the others add their tokens' rows
  rowRanges(rt, V, [C], `the token embedding "${wte.label}"`).forEach((r, i) => {
    rt.dispatch(K.embFwd, {
      params: { B, T, C, V, pos0, row0: r.first, rows: r.count, first: +(i === 0) },
      bufs: { ids, wte: rowWindow(wte, r, C), wpe, out, positions },
      groups: Math.ceil((B * T * C) / 256),
      constants: { HAS_POSITIONS: +(positions !== null) },
    });
  });
}

export function embeddingBackward(rt: GpuRuntime, args: OpArgs<"embeddingBackward">): void {
  const op = "embeddingBackward";
  const { B, T, C, V } = args;
  const dwte = rt.buf(args.dwte, op), dwpe = rt.buf(args.dwpe, op);
  const dout = rt.buf(args.dout, op), ids = rt.buf(args.ids, op, "i32");
  // packed rows: positions per token, chained as the ids are (their range is the forward's to check)
  const positions = args.positions ? rt.buf(args.positions, op, "i32") : null;
  const N = B * T;
  const links = rt.acquire((positions ? 4 : 2) * N, "i32", "embedding links");
  // dwte_main once per window of dwte's rows (link_main and dwpe_main bind the first, and ignore it)
  const windows = rowRanges(rt, V, [C], `the token embedding gradient "${dwte.label}"`);
  const bufs = (w: number) => ({ ids, dout, dwte: rowWindow(dwte, windows[w]!, C), dwpe, links, positions });
  const params = (w: number) => ({ B, T, C, V, row0: windows[w]!.first, rows: windows[w]!.count });
  const constants = { HAS_POSITIONS: +(positions !== null) };
  rt.dispatch(K.embBwdLink, { params: params(0), bufs: bufs(0), groups: Math.ceil(N / 64), constants });
  for (let w = 0; w < windows.length; w++) {
    rt.dispatch(K.embBwdWte, { params: params(w), bufs: bufs(w), groups: Math.ceil((N * C) / 256) });
  }
  const wpeGroups = Math.ceil(((positions ? N : T) * C) / 256);
  rt.dispatch(K.embBwdWpe, { params: params(0), bufs: bufs(0), groups: wpeGroups, constants });
  rt.release(links);
}

// ---------------------------------------------------------------------- layernorm

export function layernormForward(rt: GpuRuntime, args: OpArgs<"layernormForward">): void {
  const op = "layernormForward";
  const { N, C } = args;
  const out = rt.buf(args.out, op), inp = rt.buf(args.inp, op);
  const weight = rt.buf(args.weight, op), bias = rt.buf(args.bias, op);
  const mean = args.mean ? rt.buf(args.mean, op) : null;
  const rstd = args.rstd ? rt.buf(args.rstd, op) : null;
  const save = mean !== null && rstd !== null;
  rt.dispatch(K.lnFwd, {
    params: { N, C, eps: args.eps },
    bufs: { inp, weight, bias, out, mean_out: save ? mean : null, rstd_out: save ? rstd : null },
    groups: N,
    constants: { SAVE_STATS: +save },
  });
}

export function layernormBackward(rt: GpuRuntime, args: OpArgs<"layernormBackward">): void {
  const op = "layernormBackward";
  const { N, C } = args;
  const [dinp, dweight, dbias, dout, inp, weight, mean, rstd] = [
    args.dinp,
    args.dweight,
    args.dbias,
    args.dout,
    args.inp,
    args.weight,
    args.mean,
    args.rstd,
  ].map((b) => rt.buf(b, op)) as [GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf];
  const bufs = { dout, inp, weight, mean, rstd, dinp, dweight, dbias };
  const constants = { ACCUMULATE: +!!args.accumulate };
  rt.dispatch(K.lnBwdDinp, { params: { N, C }, bufs, groups: N, constants });
  rt.dispatch(K.lnBwdDparams, { params: { N, C }, bufs, groups: Math.ceil(C / 16), constants }); // 16 channels each
}

export function sumRows(rt: GpuRuntime, args: OpArgs<"sumRows">): void {
  const op = "sumRows";
  const out = rt.buf(args.out, op), inp = rt.buf(args.inp, op);
  rt.dispatch(K.sumRows, {
    params: { M: args.M, N: args.N },
    bufs: { inp, out },
    groups: Math.ceil(args.N / 16), // a workgroup per 16 columns
    constants: { ACCUMULATE: +!!args.accumulate },
  });
}

// ---------------------------------------------------------------------- loss

export function crossEntropy(rt: GpuRuntime, args: OpArgs<"crossEntropy">): void {
  const op = "crossEntropy";
  const { N, V } = args;
  const losses = rt.buf(args.losses, op), logits = rt.buf(args.logits, op);
  const targets = rt.buf(args.targets, op, "i32");
  const dlogits = args.dlogits ? rt.buf(args.dlogits, op) : null;
  const correct = args.correct ? rt.buf(args.correct, op) : null;
  const inPlace = dlogits !== null && sameRange(dlogits, logits);
  const mode = dlogits === null ? 0 : inPlace ? 2 : 1;
  // one dispatch per window of rows of the logits (and of the targets, losses, dlogits and marks with them)
  for (const r of rowRanges(rt, N, [V, 1], `the logits "${logits.label}"`)) {
    rt.dispatch(K.crossEntropy, {
      params: { N: r.count, V, scale: args.scale },
      bufs: {
        logits: rowWindow(logits, r, V),
        targets: rowWindow(targets, r, 1),
        losses: rowWindow(losses, r, 1),
        dlogits: mode === 1 ? rowWindow(dlogits!, r, V) : null,
        correct: correct ? rowWindow(correct, r, 1) : null,
      },
      groups: r.count,
      constants: { DLOGITS: mode, CORRECT: +(correct !== null) },
    });
  }
}

export function sum(rt: GpuRuntime, args: OpArgs<"sum">): void {
  const out = rt.buf(args.out, "sum"), inp = rt.buf(args.inp, "sum");
  rt.dispatch(K.sum, {
    params: { n: args.n, s: args.s ?? 1 },
    bufs: { inp, out },
    groups: 1,
    constants: { ACCUMULATE: +!!args.accumulate },
  });
}

// ---------------------------------------------------------------------- optimizer

export function globalNorm(rt: GpuRuntime, args: OpArgs<"globalNorm">): void {
  const out = rt.buf(args.out, "globalNorm");
  const BLOCK = 4096;
  // each input in windows that fit a binding (one window unless it is larger), each window in blocks
  const inputs = args.bufs.map((b) => rt.buf(b, "globalNorm")).flatMap((b) =>
    rowRanges(rt, b.length, [1], `"${b.label}"`).map((r) => rowWindow(b, r, 1))
  );
  const count = inputs.reduce((s, b) => s + Math.ceil(b.length / BLOCK), 0);
  const partials = rt.acquire(Math.max(1, count), "f32", "global norm partials");
  let offset = 0;
  for (const b of inputs) {
    const blocks = Math.ceil(b.length / BLOCK);
    if (blocks === 0) continue;
    const params = { n: b.length, offset, count };
    rt.dispatch(K.normPartial, { params, bufs: { inp: b, partials, out }, groups: blocks });
    offset += blocks;
  }
  rt.dispatch(K.normFinal, { params: { n: 0, offset: 0, count }, bufs: { inp: null, partials, out }, groups: 1 });
  rt.release(partials);
}

export function adamw(rt: GpuRuntime, args: OpArgs<"adamw">): void {
  const op = "adamw";
  const param = rt.buf(args.param, op), grad = rt.buf(args.grad, op);
  const m = rt.buf(args.m, op), v = rt.buf(args.v, op);
  const norm = args.norm ? rt.buf(args.norm, op) : null;
  const bc1 = 1 - Math.pow(args.beta1, args.step);
  const bc2 = 1 - Math.pow(args.beta2, args.step);
  // element-wise: one dispatch per window of the four buffers (one unless they exceed a binding)
  for (const r of rowRanges(rt, args.n, [1], `the AdamW update of "${param.label}"`)) {
    const w = (b: GpuBuf) => rowWindow(b, r, 1);
    rt.dispatch(K.adamw, {
      params: {
        n: r.count,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.weightDecay,
        bc1,
        bc2,
        max_norm: args.maxNorm ?? 0,
        one_minus_beta1: 1 - args.beta1,
        one_minus_beta2: 1 - args.beta2,
      },
      bufs: { param: w(param), grad: w(grad), m: w(m), v: w(v), norm },
      groups: Math.ceil(r.count / 256),
      constants: { HAS_NORM: +(norm !== null) },
    });
  }
}
