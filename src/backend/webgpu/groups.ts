/**
 * Memory groups on WebGPU: many buffers (the parameters, their gradients, AdamW's moments) side by side in a
 * few exact-size buffers, each view bound as its own range, so that AdamW and the gradient norm take one
 * dispatch per chunk, not one per parameter. The layout (offsets, chunks) is `groupLayout`'s, shared with
 * the CPU backends. A chunk holds at most one binding's worth, or one view that is larger (the token
 * embedding of GPT-2 is 154 MB, more than WebGPU's default 128 MiB binding) with those that fit beside it:
 * AdamW and the gradient norm bind such a chunk in windows (`split.ts`), the embedding and the LM head
 * bind such a view in windows of its rows.
 * @module
 */

import { type BufGroup, groupLayout, groupViewLabel } from "../backend.ts";
import { GpuBuf } from "./buffers.ts";
import type { GpuRuntime } from "./runtime.ts";

/** Allocate a group of zero-filled buffers of `lengths` (see `Backend.allocGroup`). */
export function allocGroup(
  rt: GpuRuntime,
  lengths: readonly number[],
  label: string,
  names?: readonly string[],
): BufGroup {
  const align = rt.alignElements;
  const largest = Math.max(0, ...lengths.map((n) => Math.ceil(n / align) * align));
  lengths.forEach((n, i) => rt.pool.checkSize(n * 4, groupViewLabel(label, names, i), `${n} × f32`));
  const maxChunk = Math.max(Math.floor(rt.pool.maxBindingBytes / 4 / align) * align, largest);
  const layout = groupLayout(lengths, align, maxChunk, label, names);
  const chunks = layout.chunks.map((c, ci) => {
    // an exact-size buffer (not a pooled size class: chunks are large and live long)
    const name = layout.chunks.length > 1 ? `${label} (chunk ${ci + 1} of ${layout.chunks.length})` : label;
    if (rt.disposed) throw new Error(`Cannot allocate "${name}": the WebGPU backend was disposed`);
    const buffer = rt.pool.exact(c.length * 4, name);
    rt.commands().clearBuffer(buffer, 0, c.length * 4);
    return { buf: new GpuBuf(c.length, "f32", buffer, name), first: c.first, count: c.count };
  });
  const views: GpuBuf[] = [];
  for (const c of chunks) {
    for (let i = c.first; i < c.first + c.count; i++) {
      const name = groupViewLabel(label, names, i);
      views.push(new GpuBuf(lengths[i]!, "f32", null, name, layout.offsets[i]! * 4, c.buf));
    }
  }
  return { views, chunks };
}
