/**
 * The autograd core: a {@link Tensor} is a shape plus backend memory (plus, for trainable tensors, a
 * gradient buffer); a {@link Tape} records each op as it runs forward and replays the records in reverse
 * on `backward()`. The backward rules themselves live in one table in `ops.ts`.
 *
 * Gradients always accumulate (`+=`) into a zero-initialised buffer that is created on first use, so a
 * tensor used twice (the residual stream, the tied embedding) simply receives both contributions.
 * @module
 */

import type { Backend, Buf } from "../backend/backend.ts";

/** A multi-dimensional float32 array living on a backend. */
export class Tensor {
  /** Gradient buffer (same length as `buf`), created on first accumulation. */
  grad: Buf | undefined;
  /** True for parameters and anything computed from them while a tape is recording. */
  readonly requiresGrad: boolean;
  /** A name for errors and debugging (HF parameter name for parameters). */
  readonly name: string;

  constructor(
    readonly backend: Backend,
    readonly buf: Buf,
    readonly shape: readonly number[],
    opts: { requiresGrad?: boolean; name?: string } = {},
  ) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== buf.length) {
      throw new Error(
        `Cannot make tensor ${opts.name ?? ""}: shape [${shape}] has ${n} elements, buffer ${buf.length}`,
      );
    }
    this.requiresGrad = opts.requiresGrad ?? false;
    this.name = opts.name ?? "";
  }

  /** Number of elements. */
  get size(): number {
    return this.buf.length;
  }

  /** The gradient buffer, allocated (zero-filled) if it does not exist yet. */
  gradBuf(): Buf {
    this.grad ??= this.backend.alloc(this.size, "f32", `grad ${this.name}`);
    return this.grad;
  }

  /** Release the gradient buffer. */
  freeGrad(): void {
    // The fused cross-entropy writes the logits' gradient over the logits themselves (grad === buf).
    if (this.grad && this.grad !== this.buf) this.backend.free(this.grad);
    this.grad = undefined;
  }

  /** Copy the values to the host. */
  async read(): Promise<Float32Array> {
    return (await this.backend.read(this.buf)) as Float32Array;
  }
}

/** One recorded op: the rule name and its saved context, plus the buffers it owns until backward is done. */
export interface TapeRecord {
  op: string;
  backward: () => void;
  /**
   * Tensors produced by this op. Their gradient buffers are released once the op's backward ran, and their
   * values when the tape is disposed (they are intermediate activations).
   */
  outputs: Tensor[];
  /** Saved activations (means, probabilities, …) released when the tape is disposed. */
  saved: Buf[];
}

/** The record of one forward pass. */
export class Tape {
  #records: TapeRecord[] = [];
  #done = false;

  constructor(readonly backend: Backend) {}

  /** Append a record (called by the ops in `ops.ts`). */
  push(record: TapeRecord): void {
    if (this.#done) throw new Error("Cannot record on a tape after backward(): start a new tape");
    this.#records.push(record);
  }

  /** Number of records. */
  get length(): number {
    return this.#records.length;
  }

  /**
   * Replay the records in reverse. The caller has already seeded the gradient of the final output
   * (the fused cross-entropy does that itself). Intermediate gradients are released as soon as the op
   * that produced them has propagated them; parameter gradients stay.
   */
  backward(): void {
    if (this.#done) throw new Error("Cannot run backward() twice on one tape");
    this.#done = true;
    for (let i = this.#records.length - 1; i >= 0; i--) {
      const r = this.#records[i]!;
      r.backward();
      for (const t of r.outputs) t.freeGrad();
    }
    this.dispose();
  }

  /** Release every saved activation, every intermediate output and its gradient. */
  dispose(): void {
    for (const r of this.#records) {
      for (const b of r.saved) this.backend.free(b);
      for (const t of r.outputs) {
        t.freeGrad();
        this.backend.free(t.buf);
      }
    }
    this.#records = [];
    this.#done = true;
  }
}
