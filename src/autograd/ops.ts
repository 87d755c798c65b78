/**
 * The differentiable ops GPT-2 needs, fused where it helps as llm.c does (linear with bias, layernorm,
 * attention, softmax + cross-entropy), and their backward rules in one table ({@link rules}).
 *
 * Each op runs its forward on the backend at once and, when a {@link Tape} is given, pushes a record whose
 * `backward` calls the op's rule with the context the forward saved. Every rule accumulates (`+=`) into
 * the gradient buffers of its inputs ({@link Tensor.gradBuf}), which start at zero.
 * @module
 */

import type { Activation, AttentionDropout, Backend, Buf } from "../backend/backend.ts";
import { type Tape, Tensor } from "./tensor.ts";

/** What each op's forward saves for its backward, keyed by op name. */
export interface OpContexts {
  linear: {
    x: Tensor;
    w: Tensor;
    b?: Tensor;
    out: Tensor;
    M: number;
    K: number;
    N: number;
    transW: boolean;
    /** The LoRA path's saved inputs: its dropped-out input xd [M,K] (x itself without dropout) and h = s·xd·Aᵀ. */
    lora?: LoraAdapter & { xd: Buf; h: Buf };
  };
  layernorm: { x: Tensor; w: Tensor; b: Tensor; out: Tensor; mean: Buf; rstd: Buf; N: number; C: number };
  gelu: { x: Tensor; out: Tensor; activation: Activation; deriv?: Buf };
  add: { a: Tensor; b: Tensor; out: Tensor };
  attention: {
    qkv: Tensor;
    out: Tensor;
    att: Buf;
    mask?: Buf;
    B: number;
    T: number;
    C: number;
    NH: number;
    dropout?: AttentionDropout;
  };
  dropout: { x: Tensor; out: Tensor; p: number; seed: number };
  embedding: { ids: Buf; wte: Tensor; wpe: Tensor; out: Tensor; B: number; T: number; C: number; positions?: Buf };
  crossEntropy: { logits: Tensor; dlogits: Buf };
  gatherRows: { x: Tensor; out: Tensor; runs: readonly RowRun[]; C: number };
}

/**
 * A LoRA adapter on a linear (see `model/lora.ts`): y += s·(dropout(x)·Aᵀ)·Bᵀ with `a` [r,K] and `b` [N,r]
 * (peft's lora_A and lora_B weights), `dropout` in training only.
 */
export interface LoraAdapter {
  a: Tensor;
  b: Tensor;
  scale: number;
  dropout?: { p: number; seed: number };
}

/** A run of consecutive rows: `len` rows starting at row `src`, in order. */
export interface RowRun {
  src: number;
  len: number;
}

/** A backward rule: propagate `out`'s gradient to the inputs' gradients. */
type Rule<K extends keyof OpContexts> = (be: Backend, c: OpContexts[K]) => void;

/**
 * The backward rules, one per op. The type makes a missing rule a compile error.
 */
export const rules: { [K in keyof OpContexts]: Rule<K> } = {
  // y = x·W + b  (W stored [K,N], HF Conv1D), or y = x·Wᵀ (transW: W stored [N,K], the tied LM head)
  //   dx = dy·Wᵀ            [M,K]
  //   dW = xᵀ·dy            [K,N]   (transW: dW = dyᵀ·x  [N,K])
  //   db = Σ_rows dy        [N]
  //
  // With a LoRA adapter (h = s·xd·Aᵀ saved, xd = dropout(x)):
  //   dB = dyᵀ·h            [N,r]
  //   dh = s·(dy·B)         [M,r]
  //   dA = dhᵀ·xd           [r,K]
  //   dx += dropout'(dh·A)  [M,K]
  linear(be, { x, w, b, out, M, K, N, transW, lora }) {
    const dy = out.grad;
    if (!dy) return;
    if (lora) loraBackward(be, { x, dy, M, K, N, lora });
    if (x.requiresGrad) {
      be.matmul({ out: x.gradBuf(), a: dy, b: w.buf, M, N: K, K: N, transB: !transW, accumulate: true });
    }
    if (w.requiresGrad) {
      if (transW) be.matmul({ out: w.gradBuf(), a: dy, b: x.buf, M: N, N: K, K: M, transA: true, accumulate: true });
      else be.matmul({ out: w.gradBuf(), a: x.buf, b: dy, M: K, N, K: M, transA: true, accumulate: true });
    }
    if (b?.requiresGrad) be.sumRows({ out: b.gradBuf(), inp: dy, M, N, accumulate: true });
  },

  // y = (x − μ)·rstd·w + b ; with x̂ = (x − μ)·rstd and g = dy·w:
  //   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),  dw = Σ_rows dy·x̂,  db = Σ_rows dy
  // (frozen weights, as under LoRA, get their gradients in temporaries that are dropped)
  layernorm(be, { x, w, b, out, mean, rstd, N, C }) {
    const dy = out.grad;
    if (!dy) return;
    const [dw, db] = [gradOrTemp(be, w), gradOrTemp(be, b)];
    be.layernormBackward({
      dinp: x.gradBuf(),
      dweight: dw.buf,
      dbias: db.buf,
      dout: dy,
      inp: x.buf,
      weight: w.buf,
      mean,
      rstd,
      N,
      C,
      accumulate: true,
    });
    dw.done();
    db.done();
  },

  // y = act(x) (gelu_new by default):  dx = act'(x)·dy
  gelu(be, { x, out, activation, deriv }) {
    if (!out.grad) return;
    const n = x.size;
    be.geluBackward({ dinp: x.gradBuf(), inp: x.buf, dout: out.grad, n, accumulate: true, deriv, activation });
  },

  // y = a + b:  da = dy, db = dy
  add(be, { a, b, out }) {
    const dy = out.grad;
    if (!dy) return;
    for (const t of [a, b]) {
      if (!t.requiresGrad) continue;
      if (t.grad) be.add({ out: t.grad, a: t.grad, b: dy, n: t.size });
      else {
        t.grad = allocOutput(be, t.size, `grad ${t.name}`);
        be.copy(t.grad, dy);
      }
    }
  },

  // y = softmax(q·kᵀ/√HS + causal/padding mask)·v : see the attention_backward kernel for the maths.
  // The backend assigns dqkv, so it goes straight into a fresh gradient or through a temporary.
  // With attention dropout the probabilities are masked and rescaled on the way to v; the kernels recompute
  // the mask from the same seed.
  attention(be, { qkv, out, att, mask, B, T, C, NH, dropout }) {
    const dy = out.grad;
    if (!dy) return;
    if (!qkv.grad) {
      qkv.grad = allocOutput(be, qkv.size, `grad ${qkv.name}`);
      be.attentionBackward({ dqkv: qkv.grad, dout: dy, qkv: qkv.buf, att, mask, B, T, C, NH, dropout });
    } else {
      const tmp = allocOutput(be, qkv.size, "attention dqkv");
      be.attentionBackward({ dqkv: tmp, dout: dy, qkv: qkv.buf, att, mask, B, T, C, NH, dropout });
      be.add({ out: qkv.grad, a: qkv.grad, b: tmp, n: qkv.size });
      be.free(tmp);
    }
  },

  // y = x ⊙ keep / (1 − p):  dx += dy ⊙ keep / (1 − p), the mask recomputed from (p, seed)
  dropout(be, { x, out, p, seed }) {
    if (!out.grad || !x.requiresGrad) return;
    be.dropoutBackward({ dinp: x.gradBuf(), dout: out.grad, n: x.size, p, seed, accumulate: true });
  },

  // y[b,t] = wte[ids[b,t]] + wpe[pos(b,t)]:  dwte[ids[b,t]] += dy[b,t],  dwpe[pos(b,t)] += dy[b,t]
  // (pos(b,t) = t, or positions[b,t] for packed rows)
  embedding(be, { ids, wte, wpe, out, B, T, C, positions }) {
    if (!out.grad) return;
    const [dwte, dwpe] = [gradOrTemp(be, wte), gradOrTemp(be, wpe)];
    be.embeddingBackward({
      dwte: dwte.buf,
      dwpe: dwpe.buf,
      dout: out.grad,
      ids,
      B,
      T,
      C,
      V: wte.shape[0]!,
      positions,
    });
    dwte.done();
    dwpe.done();
  },

  // y = x[rows]:  dx[rows] = dy (other rows 0); the rows are distinct, so copying is adding to zero
  gatherRows(be, { x, out, runs, C }) {
    const dy = out.grad;
    if (!dy || !x.requiresGrad) return;
    const fresh = !x.grad;
    const dst = fresh ? x.gradBuf() : be.alloc(x.size, "f32", "gather rows dx");
    let r = 0;
    for (const { src, len } of runs) {
      be.copy(dst, dy, len * C, src * C, r * C);
      r += len;
    }
    if (!fresh) {
      be.add({ out: x.grad!, a: x.grad!, b: dst, n: x.size });
      be.free(dst);
    }
  },

  // loss = mean over supervised rows of −log softmax(logits)[target]:
  //   dlogits = (softmax(logits) − onehot(target)) / count, computed in the forward (fused, in place).
  crossEntropy(be, { logits, dlogits }) {
    if (logits.grad) be.add({ out: logits.grad, a: logits.grad, b: dlogits, n: logits.size });
    else logits.grad = dlogits; // the logits buffer now holds its own gradient
  },
};

/** Where an op runs: the backend and, while training, the tape that records it. */
export interface OpContext {
  be: Backend;
  tape?: Tape;
  /**
   * Where the ops' outputs come from (f32, assigned in full by the op), when not from the backend: an
   * untaped forward hands each layer the buffers the previous one released.
   */
  alloc?: (n: number, name: string) => Buf;
}

function record<K extends keyof OpContexts>(
  ctx: OpContext,
  op: K,
  c: OpContexts[K],
  outputs: Tensor[],
  saved: Buf[] = [],
): void {
  if (!ctx.tape) {
    for (const b of saved) ctx.be.free(b);
    return;
  }
  const rule = rules[op] as Rule<K>;
  ctx.tape.push({ op, backward: () => rule(ctx.be, c), outputs, saved });
}

/**
 * Where a rule accumulates `t`'s gradient: its gradient buffer when it trains, else a zeroed temporary that
 * `done()` frees (a frozen parameter holds no gradient).
 */
function gradOrTemp(be: Backend, t: Tensor): { buf: Buf; done: () => void } {
  if (t.requiresGrad) return { buf: t.gradBuf(), done: () => {} };
  const buf = be.alloc(t.size, "f32", `frozen grad ${t.name}`);
  return { buf, done: () => be.free(buf) };
}

/** The LoRA path of the linear rule (see the comment there). */
function loraBackward(
  be: Backend,
  o: { x: Tensor; dy: Buf; M: number; K: number; N: number; lora: NonNullable<OpContexts["linear"]["lora"]> },
): void {
  const { x, dy, M, K, N, lora } = o;
  const { a, b, scale, xd, h, dropout } = lora;
  const r = a.shape[0]!;
  if (b.requiresGrad) be.matmul({ out: b.gradBuf(), a: dy, b: h, M: N, N: r, K: M, transA: true, accumulate: true });
  if (!a.requiresGrad && !x.requiresGrad) return;
  const dh = allocOutput(be, M * r, "lora dh");
  be.matmul({ out: dh, a: dy, b: b.buf, M, N: r, K: N });
  be.scale({ buf: dh, n: M * r, s: scale });
  if (a.requiresGrad) be.matmul({ out: a.gradBuf(), a: dh, b: xd, M: r, N: K, K: M, transA: true, accumulate: true });
  if (x.requiresGrad) {
    if (!dropout) be.matmul({ out: x.gradBuf(), a: dh, b: a.buf, M, N: K, K: r, accumulate: true });
    else {
      const dxd = allocOutput(be, M * K, "lora dx");
      be.matmul({ out: dxd, a: dh, b: a.buf, M, N: K, K: r });
      be.dropoutBackward({ dinp: x.gradBuf(), dout: dxd, n: M * K, ...dropout, accumulate: true });
      be.free(dxd);
    }
  }
  be.free(dh);
}

/** The output of a forward op: every op here writes its output in full, so it need not start zeroed. */
function newTensor(ctx: OpContext, shape: number[], name: string, requiresGrad: boolean): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const buf = ctx.alloc?.(n, name) ?? allocOutput(ctx.be, n, name);
  return new Tensor(ctx.be, buf, shape, { requiresGrad: requiresGrad && !!ctx.tape, name });
}

/** A float32 buffer that an op assigns in full: not zeroed where the backend can skip it. */
function allocOutput(be: Backend, n: number, name: string): Buf {
  return be.allocUninit?.(n, "f32", name) ?? be.alloc(n, "f32", name);
}

/**
 * y[M,N] = x[M,K]·W[K,N] + b[N]; with `transW`, W is stored [N,K] (y = x·Wᵀ, the tied LM head).
 * `x` may have any leading shape; its last dimension is K.
 */
export function linear(
  ctx: OpContext,
  x: Tensor,
  w: Tensor,
  b?: Tensor,
  opts: { transW?: boolean; lora?: LoraAdapter } = {},
): Tensor {
  const transW = opts.transW ?? false;
  const K = x.shape[x.shape.length - 1]!;
  const M = x.size / K;
  const [wr, wc] = [w.shape[0]!, w.shape[1]!];
  const N = transW ? wr : wc;
  if ((transW ? wc : wr) !== K) {
    throw new Error(`Cannot apply linear ${w.name}: input has ${K} features, weight is [${w.shape}]`);
  }
  const lora = opts.lora;
  const trains = x.requiresGrad || w.requiresGrad || !!b?.requiresGrad || !!lora?.a.requiresGrad ||
    !!lora?.b.requiresGrad;
  const out = newTensor(ctx, [...x.shape.slice(0, -1), N], `${w.name}:out`, trains);
  const be = ctx.be;
  be.matmul({ out: out.buf, a: x.buf, b: w.buf, bias: b?.buf, M, N, K, transB: transW });
  if (!lora) {
    record(ctx, "linear", { x, w, b, out, M, K, N, transW }, [out]);
    return out;
  }
  // the LoRA path: xd = dropout(x), h = s·xd·Aᵀ [M,r], y += h·Bᵀ (the scale on the small h)
  const r = lora.a.shape[0]!;
  if (lora.a.shape[1] !== K || lora.b.shape[0] !== N || lora.b.shape[1] !== r || transW) {
    throw new Error(
      `Cannot apply LoRA to ${w.name}: A is [${lora.a.shape}] and B [${lora.b.shape}], expected [r,${K}] and [${N},r]`,
    );
  }
  const dropout = lora.dropout && lora.dropout.p > 0 && ctx.tape ? lora.dropout : undefined;
  const xd = dropout ? allocOutput(be, M * K, "lora dropout") : x.buf;
  if (dropout) be.dropoutForward({ out: xd, inp: x.buf, n: M * K, ...dropout });
  const h = allocOutput(be, M * r, "lora h");
  be.matmul({ out: h, a: xd, b: lora.a.buf, M, N: r, K, transB: true });
  be.scale({ buf: h, n: M * r, s: lora.scale });
  be.matmul({ out: out.buf, a: h, b: lora.b.buf, M, N, K: r, transB: true, accumulate: true });
  const saved = dropout ? [h, xd] : [h];
  record(ctx, "linear", { x, w, b, out, M, K, N, transW, lora: { ...lora, dropout, xd, h } }, [out], saved);
  return out;
}

/** Layernorm over the last dimension. */
export function layernorm(ctx: OpContext, x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
  const C = x.shape[x.shape.length - 1]!;
  const N = x.size / C;
  const out = newTensor(ctx, [...x.shape], `${w.name}:out`, x.requiresGrad || w.requiresGrad || b.requiresGrad);
  const training = !!ctx.tape;
  const mean = training ? ctx.be.alloc(N, "f32", "layernorm mean") : undefined;
  const rstd = training ? ctx.be.alloc(N, "f32", "layernorm rstd") : undefined;
  ctx.be.layernormForward({ out: out.buf, mean, rstd, inp: x.buf, weight: w.buf, bias: b.buf, N, C, eps });
  if (training) record(ctx, "layernorm", { x, w, b, out, mean: mean!, rstd: rstd!, N, C }, [out], [mean!, rstd!]);
  return out;
}

/** The MLP activation, elementwise: `activation` (default gelu_new, GPT-2's tanh GELU). */
export function gelu(ctx: OpContext, x: Tensor, activation: Activation = "gelu_new"): Tensor {
  const out = newTensor(ctx, [...x.shape], `${x.name}:gelu`, x.requiresGrad);
  // where the backend can, the forward saves gelu'(x) and the backward multiplies by it
  const deriv = ctx.tape && x.requiresGrad && ctx.be.geluSavesDerivative
    ? allocOutput(ctx.be, x.size, "gelu derivative")
    : undefined;
  ctx.be.geluForward({ out: out.buf, inp: x.buf, n: x.size, deriv, activation });
  record(ctx, "gelu", { x, out, activation, deriv }, [out], deriv ? [deriv] : []);
  return out;
}

/** a + b, elementwise (the residual connection). */
export function add(ctx: OpContext, a: Tensor, b: Tensor): Tensor {
  if (a.size !== b.size) throw new Error(`Cannot add tensors of shapes [${a.shape}] and [${b.shape}]`);
  const out = newTensor(ctx, [...a.shape], "residual", a.requiresGrad || b.requiresGrad);
  ctx.be.add({ out: out.buf, a: a.buf, b: b.buf, n: a.size });
  record(ctx, "add", { a, b, out }, [out]);
  return out;
}

/**
 * Causal multi-head attention over qkv [B,T,3C] with an optional key padding mask (i32 [B,T]; for packed
 * rows the segment ids, block-diagonal causal: see Backend.attentionForward) and, in training, dropout on
 * the attention probabilities.
 */
export function attention(
  ctx: OpContext,
  qkv: Tensor,
  opts: { B: number; T: number; C: number; NH: number; mask?: Buf; dropout?: AttentionDropout },
): Tensor {
  const { B, T, C, NH, mask } = opts;
  const dropout = opts.dropout && opts.dropout.p > 0 ? opts.dropout : undefined;
  const out = newTensor(ctx, [B, T, C], "attention:out", qkv.requiresGrad);
  // what the backward needs: the probabilities, or less (see Backend.attentionSavedLength)
  const saved = ctx.be.attentionSavedLength?.(B, T, NH) ?? B * NH * T * T;
  const att = allocOutput(ctx.be, saved, "attention saved");
  ctx.be.attentionForward({ out: out.buf, att, qkv: qkv.buf, mask, B, T, C, NH, dropout });
  // the mask is the caller's: it must live until the backward (GPT2.loss frees it after tape.backward())
  record(ctx, "attention", { qkv, out, att, mask, B, T, C, NH, dropout }, [out], [att]);
  return out;
}

/** Inverted dropout (training): x ⊙ keep / (1 − p). p = 0 returns `x` itself. */
export function dropout(ctx: OpContext, x: Tensor, p: number, seed: number): Tensor {
  if (p <= 0) return x;
  const out = newTensor(ctx, [...x.shape], `${x.name}:dropout`, x.requiresGrad);
  ctx.be.dropoutForward({ out: out.buf, inp: x.buf, n: x.size, p, seed });
  record(ctx, "dropout", { x, out, p, seed }, [out]);
  return out;
}

/**
 * Token + position embedding: out[b,t] = wte[ids[b,t]] + wpe[t]. `ids` is i32 [B,T]. Positions may be
 * given per token (`positions`, i32 [B,T]: batched generation, packed rows in training); inference (with a
 * KV cache) may also shift them to pos0 + t, which is refused when recording. `positions` must live until
 * the backward (the caller frees it).
 */
export function embedding(
  ctx: OpContext,
  ids: Buf,
  wte: Tensor,
  wpe: Tensor,
  opts: { B: number; T: number; pos0?: number; positions?: Buf },
): Tensor {
  const { B, T, pos0, positions } = opts;
  if (ctx.tape && pos0) throw new Error("Cannot record embedding: pos0 is inference only");
  const C = wte.shape[1]!;
  const out = newTensor(ctx, [B, T, C], "embedding:out", wte.requiresGrad || wpe.requiresGrad);
  ctx.be.embeddingForward({ out: out.buf, ids, wte: wte.buf, wpe: wpe.buf, B, T, C, pos0, positions });
  record(ctx, "embedding", { ids, wte, wpe, out, B, T, C, positions }, [out]);
  return out;
}

/**
 * Rows of x [N,C] picked by runs of consecutive rows, in order: out [R,C]. Training computes the LM head only
 * at the positions that carry a label (most are masked, and the head is the largest matmul of GPT-2).
 */
export function gatherRows(ctx: OpContext, x: Tensor, runs: readonly RowRun[]): Tensor {
  const C = x.shape[x.shape.length - 1]!;
  const R = runs.reduce((a, r) => a + r.len, 0);
  const out = newTensor(ctx, [R, C], `${x.name}:rows`, x.requiresGrad);
  let r = 0;
  for (const { src, len } of runs) {
    ctx.be.copy(out.buf, x.buf, len * C, r * C, src * C);
    r += len;
  }
  record(ctx, "gatherRows", { x, out, runs, C }, [out]);
  return out;
}

/**
 * Fused softmax + masked mean cross-entropy over logits [N,V] and targets i32 [N] (−100 ignored).
 * `count` divides the summed loss: the number of supervised rows (known on the host), or with gradient
 * accumulation those of every batch of the optimizer step. Returns a 1-element buffer with the mean
 * loss that the caller owns. When recording, the logits' gradient is computed in the same pass, in place
 * (the logits are not needed afterwards). With `correct` (a 1-element buffer), the number of rows whose
 * argmax is their target is added to it, on the device (the token accuracy's numerator).
 */
export function crossEntropy(
  ctx: OpContext,
  logits: Tensor,
  targets: Buf,
  count: number,
  opts: { correct?: Buf } = {},
): Buf {
  if (count <= 0) throw new Error("Cannot compute the loss: the batch has no supervised token (all labels are -100)");
  const V = logits.shape[logits.shape.length - 1]!;
  const N = logits.size / V;
  const losses = ctx.be.alloc(N, "f32", "losses");
  const loss = ctx.be.alloc(1, "f32", "loss");
  const training = !!ctx.tape && logits.requiresGrad;
  const correct = opts.correct ? ctx.be.alloc(N, "f32", "correct") : undefined;
  ctx.be.crossEntropy({
    losses,
    dlogits: training ? logits.buf : undefined,
    logits: logits.buf,
    targets,
    N,
    V,
    scale: 1 / count,
    correct,
  });
  ctx.be.sum({ out: loss, inp: losses, n: N, s: 1 / count });
  ctx.be.free(losses);
  if (correct) {
    ctx.be.sum({ out: opts.correct!, inp: correct, n: N, accumulate: true });
    ctx.be.free(correct);
  }
  if (training) record(ctx, "crossEntropy", { logits, dlogits: logits.buf }, []);
  return loss;
}
