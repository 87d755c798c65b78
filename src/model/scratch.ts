/**
 * The buffers of untaped forwards (inference, gradient checkpointing), reused from layer to layer.
 * @module
 */

import type { Backend, Buf } from "../backend/backend.ts";

/**
 * The activations of untaped forwards: buffers released by one layer are handed to the next by length (a
 * layer needs the same ones), so a forward allocates about one layer's worth whatever its depth, and a
 * {@link KvCache}'s next forward of the same shape none. {@link Scratch.dispose} returns them to the backend.
 */
export class Scratch {
  readonly #idle = new Map<number, Buf[]>();
  constructor(readonly be: Backend) {}

  /** A buffer of `n` f32 (contents undefined): a released one, or a new one from the backend. */
  readonly alloc = (n: number, name: string): Buf =>
    this.#idle.get(n)?.pop() ?? this.be.allocUninit?.(n, "f32", name) ?? this.be.alloc(n, "f32", name);

  /** Take `buf` back for a later {@link alloc} of its length. */
  release(buf: Buf): void {
    const list = this.#idle.get(buf.length);
    if (list) list.push(buf);
    else this.#idle.set(buf.length, [buf]);
  }

  /** Free the released buffers (those still held, such as the logits, are their holders'). */
  dispose(): void {
    for (const list of this.#idle.values()) for (const b of list) this.be.free(b);
    this.#idle.clear();
  }
}
