/**
 * AdamW exactly as `torch.optim.AdamW`, with `torch.nn.utils.clip_grad_norm_` folded in: the global
 * gradient norm is reduced on the device and each parameter's update reads it there, so a step needs no
 * read back to the host.
 *
 * When the model keeps its parameters and gradients in groups (`GPT2.groups`, on backends with
 * `allocGroup`), the moments are groups of the same layout too and a step is one norm pass plus one AdamW
 * dispatch per chunk over all parameters at once (the zeros between views stay zero: no gradient, no
 * update); otherwise one norm pass per parameter and one AdamW call per parameter.
 * @module
 */

import { type Backend, type Buf, type BufGroup, freeGroup, sameGroupLayout } from "../backend/backend.ts";
import type { Tensor } from "../autograd/tensor.ts";

/** What a model says of its grouped parameters (see `GPT2.groups`); null when they are not grouped. */
export interface GroupedParams {
  readonly groups: { params: BufGroup; grads: BufGroup | null } | null;
}

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
  /** The moments as groups laid out as the parameters (the grouped path), or null. */
  #mg: BufGroup | null = null;
  #vg: BufGroup | null = null;
  #lastPath: "grouped" | "per-parameter" | null = null;
  readonly opts: Required<AdamWOptions>;

  /**
   * `grouped` (the model) lets the optimizer take the grouped path whenever the parameters in `params`
   * are exactly the model's parameter group, in order, each with its gradient in the gradient group.
   */
  constructor(
    readonly be: Backend,
    readonly params: ReadonlyMap<string, Tensor>,
    opts: AdamWOptions,
    readonly grouped?: GroupedParams,
  ) {
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

  /**
   * How the last step ran: "grouped" (one norm pass and one AdamW dispatch per chunk of the model's
   * parameter group), "per-parameter", or null before the first step.
   */
  get lastPath(): "grouped" | "per-parameter" | null {
    return this.#lastPath;
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
    const groups = this.#groupsFor(withGrad);
    const clip = Number.isFinite(o.maxGradNorm)
      ? { norm: this.#norm, maxNorm: o.maxGradNorm }
      : { norm: undefined, maxNorm: undefined };
    const hyper = { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
    if (groups) {
      const { params, grads } = groups;
      const [mg, vg] = this.#moments(withGrad.map(([name]) => name), params);
      be.globalNorm({ out: this.#norm, bufs: grads.chunks.map((c) => c.buf) });
      this.#step++;
      this.#lastPath = "grouped";
      params.chunks.forEach((c, i) => {
        be.adamw({
          param: c.buf,
          grad: grads.chunks[i]!.buf,
          m: mg.chunks[i]!.buf,
          v: vg.chunks[i]!.buf,
          n: c.buf.length,
          ...hyper,
          step: this.#step,
          ...clip,
        });
      });
      return;
    }
    be.globalNorm({ out: this.#norm, bufs: withGrad.map(([, t]) => t.grad!) });
    this.#step++;
    this.#lastPath = "per-parameter";
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
      be.adamw({ param: t.buf, grad: t.grad!, m, v: v!, n: t.size, ...hyper, step: this.#step, ...clip });
    }
  }

  /** The model's groups when the parameters being updated are exactly its groups' views, in order. */
  #groupsFor(withGrad: readonly [string, Tensor][]): { params: BufGroup; grads: BufGroup } | null {
    const g = this.grouped?.groups;
    if (!g?.grads || withGrad.length !== g.params.views.length) return null;
    const ok = withGrad.every(([, t], i) => t.buf === g.params.views[i] && t.grad === g.grads!.views[i]);
    return ok ? { params: g.params, grads: g.grads } : null;
  }

  /**
   * The moment groups for parameter group `params` (made on first use, or anew when its layout changed),
   * with `#m`/`#v` pointing at their views. Moments held until then (an imported state, an older layout)
   * are copied in where the length still matches; a resized parameter starts from zeros, as on the other
   * path.
   */
  #moments(names: readonly string[], params: BufGroup): [BufGroup, BufGroup] {
    const be = this.be;
    const old = [this.#mg, this.#vg];
    if (!this.#mg || !sameGroupLayout(this.#mg, params)) {
      const lengths = params.views.map((b) => b.length);
      this.#mg = be.allocGroup!(lengths, "adam m", names);
      this.#vg = be.allocGroup!(lengths, "adam v", names);
    }
    const pairs: [Map<string, Buf>, BufGroup][] = [[this.#m, this.#mg], [this.#v, this.#vg!]];
    names.forEach((name, i) => {
      for (const [map, group] of pairs) {
        const cur = map.get(name), view = group.views[i]!;
        if (cur === view) continue;
        if (cur?.length === view.length) be.copy(view, cur);
        if (cur) be.free(cur);
        map.set(name, view);
      }
    });
    for (const g of old) if (g && g !== this.#mg && g !== this.#vg) freeGroup(be, g);
    return [this.#mg, this.#vg!];
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
    for (const [map, moments, label] of [[this.#m, state.m, "m"], [this.#v, state.v, "v"]] as const) {
      for (const [name, data] of moments) {
        const old = map.get(name);
        if (old?.length === data.length) {
          this.be.write(old, data); // in place: it may be a view of a moment group
          continue;
        }
        if (old) this.be.free(old);
        map.set(name, this.be.upload(data, `adam ${label} ${name}`));
      }
    }
  }

  /** Release the optimizer's buffers. */
  dispose(): void {
    for (const b of [...this.#m.values(), ...this.#v.values(), this.#norm]) this.be.free(b);
    for (const g of [this.#mg, this.#vg]) if (g) freeGroup(this.be, g);
    this.#mg = this.#vg = null;
    this.#m.clear();
    this.#v.clear();
  }
}
