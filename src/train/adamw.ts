/**
 * AdamW exactly as `torch.optim.AdamW`, with `torch.nn.utils.clip_grad_norm_` folded in: the global
 * gradient norm is reduced on the device and each parameter's update reads it there, so a step needs no
 * read back to the host.
 * @module
 */

import type { Backend, Buf } from "../backend/backend.ts";
import type { Tensor } from "../autograd/tensor.ts";

/** AdamW settings (torch defaults except lr and weight decay, which are the notebook's). */
export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (the notebook: 1.0). Omitted: no clipping. */
  maxGradNorm?: number;
}

/** Host copy of the optimizer state, for checkpoints. */
export interface AdamWState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** The optimizer; it owns first and second moment buffers for every parameter. */
export class AdamW {
  #step = 0;
  #m = new Map<string, Buf>();
  #v = new Map<string, Buf>();
  #norm: Buf;
  readonly opts: Required<AdamWOptions>;

  constructor(readonly be: Backend, readonly params: ReadonlyMap<string, Tensor>, opts: AdamWOptions) {
    this.opts = {
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      maxGradNorm: Infinity,
      ...opts,
    };
    this.#norm = be.alloc(1, "f32", "grad norm");
  }

  /** Optimizer steps taken so far. */
  get stepCount(): number {
    return this.#step;
  }

  /** The global gradient norm (before clipping) of the last step, on the device. */
  get gradNorm(): Buf {
    return this.#norm;
  }

  /**
   * Clip and update every parameter that has a gradient, with learning rate `lr` (the scheduler's value
   * for this step). Gradients are left in place; call `model.zeroGrad()` before the next backward.
   */
  step(lr: number): void {
    const be = this.be, o = this.opts;
    const withGrad = [...this.params].filter(([, t]) => t.grad);
    be.globalNorm({ out: this.#norm, bufs: withGrad.map(([, t]) => t.grad!) });
    this.#step++;
    for (const [name, t] of withGrad) {
      // A parameter replaced since the last step (vocabulary resize) gets fresh moments.
      let m = this.#m.get(name), v = this.#v.get(name);
      if (!m || m.length !== t.size) {
        if (m) be.free(m);
        if (v) be.free(v);
        m = be.alloc(t.size, "f32", `adam m ${name}`);
        v = be.alloc(t.size, "f32", `adam v ${name}`);
        this.#m.set(name, m);
        this.#v.set(name, v);
      }
      be.adamw({
        param: t.buf,
        grad: t.grad!,
        m,
        v: v!,
        n: t.size,
        lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weightDecay: o.weightDecay,
        step: this.#step,
        norm: Number.isFinite(o.maxGradNorm) ? this.#norm : undefined,
        maxNorm: Number.isFinite(o.maxGradNorm) ? o.maxGradNorm : undefined,
      });
    }
  }

  /** Copy the state to the host (for a checkpoint). */
  async exportState(): Promise<AdamWState> {
    const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
    for (const [name, b] of this.#m) m.set(name, (await this.be.read(b)) as Float32Array);
    for (const [name, b] of this.#v) v.set(name, (await this.be.read(b)) as Float32Array);
    return { step: this.#step, m, v };
  }

  /** Restore a state written by {@link exportState}. */
  importState(state: AdamWState): void {
    this.#step = state.step;
    for (const [name, data] of state.m) {
      const old = this.#m.get(name);
      if (old) this.be.free(old);
      this.#m.set(name, this.be.upload(data, `adam m ${name}`));
    }
    for (const [name, data] of state.v) {
      const old = this.#v.get(name);
      if (old) this.be.free(old);
      this.#v.set(name, this.be.upload(data, `adam v ${name}`));
    }
  }

  /** Release the optimizer's buffers. */
  dispose(): void {
    for (const b of [...this.#m.values(), ...this.#v.values(), this.#norm]) this.be.free(b);
    this.#m.clear();
    this.#v.clear();
  }
}
