/**
 * Tensors larger than one binding. A kernel sees at most maxStorageBufferBindingSize bytes of a buffer (128
 * MiB unless the adapter offers more; lavapipe offers exactly that), while the buffer itself may be larger
 * (maxBufferSize: 2 GiB on lavapipe under Deno, 4 GiB under Bun). GPT-2's tied token embedding wte [V, C]
 * (V = 50257: 154 MB at C = 768, 257 MB at 1280, 321 MB at 1600), its gradient and AdamW's moments of it,
 * and the logits [B·T, V] with their gradient (206 MB at B 4, T 256) are larger than 128 MiB. The ops that
 * meet them bind them in windows, ranges of the one buffer (`windowOf`), each starting at a multiple of
 * minStorageBufferOffsetAlignment:
 * - embedding forward and backward: one dispatch per window of wte's rows (the kernels skip the tokens of
 *   other windows);
 * - cross-entropy: one dispatch per window of the logits' rows ({@link rowRanges});
 * - AdamW and the gradient norm: one dispatch per window of a chunk (element-wise, so any cut will do);
 * - matmul (the LM head and its two gradients): {@link splitMatmul} cuts the product into blocks whose
 *   operands each fit a binding, gathering a block of columns into a buffer of its own where it is not one
 *   range of memory (`kernels/copy_block.wgsl`).
 * Copies, reads, writes and clears need no windows: WebGPU's copy commands have no binding limit. A tensor
 * larger than maxBufferSize is refused when it is allocated (`BufferPool.checkSize`), and any other op that
 * meets a tensor larger than a binding fails at its dispatch with an error naming the kernel, the tensor and
 * the limit.
 * @module
 */

import type { MatmulArgs } from "../backend.ts";
import { GpuBuf, windowOf } from "./buffers.ts";
import { K } from "./kernels.ts";
import type { GpuRuntime } from "./runtime.ts";

/** Rows `first … first + count − 1` of a matrix. */
export interface RowRange {
  first: number;
  count: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Cut `rows` rows into ranges that one binding holds in each of the matrices sharing them, whose rows are
 * `rowLengths` elements long (the logits' V, the targets' 1), every range starting at an aligned offset in
 * each (a multiple of `step` rows, step·length a multiple of the alignment). One range of all rows when
 * they fit. Throws, naming `what`, when not even `step` rows fit.
 */
export function rowRanges(rt: GpuRuntime, rows: number, rowLengths: readonly number[], what: string): RowRange[] {
  const limit = Math.floor(rt.maxBindingBytes / 4);
  const longest = Math.max(...rowLengths);
  if (rows * longest <= limit) return [{ first: 0, count: rows }];
  const align = rt.alignElements;
  // the fewest rows whose length is a whole number of alignments in every matrix (a divisor of align each)
  const step = Math.max(...rowLengths.map((n) => align / gcd(align, n)));
  const per = Math.floor(Math.floor(limit / longest) / step) * step;
  if (per < 1) {
    throw new Error(
      `Cannot split ${what} into bindings: ${step} row(s) of ${longest} floats, the smallest aligned part, exceed ` +
        `one binding of ${rt.maxBindingBytes} bytes on this device`,
    );
  }
  const out: RowRange[] = [];
  for (let r = 0; r < rows; r += per) out.push({ first: r, count: Math.min(per, rows - r) });
  return out;
}

/** The window of rows `r` of a buffer whose rows are `rowLength` elements (the whole buffer when it fits). */
export function rowWindow(b: GpuBuf, r: RowRange, rowLength: number): GpuBuf {
  return windowOf(b, r.first * rowLength, r.count * rowLength);
}

/** A block of a row-major matrix in a buffer: element (r, c) at `buf[off + r·ld + c]`. */
interface Block {
  buf: GpuBuf;
  off: number;
  rows: number;
  cols: number;
  ld: number;
}

/**
 * `dst (=|+=) src` for two blocks of equal shape (copy_block.wgsl), in as many dispatches as the two
 * bindings need: each dispatch binds the rows it copies as one window of each buffer, the window starting
 * at the aligned element at or before the block's first, which the kernel's offset `x_0` skips.
 */
function copyBlock(rt: GpuRuntime, src: Block, dst: Block, accumulate: boolean): void {
  const limit = Math.floor(rt.maxBindingBytes / 4), align = rt.alignElements;
  const ld = Math.max(src.ld, dst.ld);
  // rows per dispatch: the window of rc rows spans (rc − 1)·ld + cols elements, plus < align before the block
  const per = Math.floor((limit - (align - 1) - src.cols) / ld) + 1;
  if (per < 1) {
    throw new Error(
      `Cannot split "${src.buf.label}" into bindings: a row of ${src.cols} floats exceeds one binding of ` +
        `${rt.maxBindingBytes} bytes on this device`,
    );
  }
  const view = (x: Block, r: number, rc: number) => {
    const start = x.off + r * x.ld;
    const at = Math.floor((x.buf.offset / 4 + start) / align) * align - x.buf.offset / 4;
    return { buf: windowOf(x.buf, at, start - at + (rc - 1) * x.ld + x.cols), x0: start - at };
  };
  for (let r = 0; r < src.rows; r += per) {
    const rc = Math.min(per, src.rows - r);
    const s = view(src, r, rc), d = view(dst, r, rc);
    rt.dispatch(K.copyBlock, {
      params: { rows: rc, cols: src.cols, src_0: s.x0, src_ld: src.ld, dst_0: d.x0, dst_ld: dst.ld },
      bufs: { src: s.buf, dst: d.buf },
      groups: Math.ceil((rc * src.cols) / 256),
      constants: { ACCUMULATE: +accumulate },
    });
  }
}

/**
 * A block as one buffer a kernel can bind: a window of the matrix where the block is one aligned range of
 * it (whole rows), else a temporary holding a copy (`temp` set: the caller releases it).
 */
function bindBlock(rt: GpuRuntime, x: Block, label: string): { buf: GpuBuf; temp: boolean } {
  const contiguous = x.cols === x.ld || x.rows === 1;
  if (contiguous && (x.buf.offset / 4 + x.off) % rt.alignElements === 0) {
    return { buf: windowOf(x.buf, x.off, x.rows * x.cols), temp: false };
  }
  const tmp = rt.acquire(x.rows * x.cols, "f32", label);
  copyBlock(rt, x, { buf: tmp, off: 0, rows: x.rows, cols: x.cols, ld: x.cols }, false);
  return { buf: tmp, temp: true };
}

/** Whether a matmul's operands each fit one binding (then it needs no splitting). */
export function matmulFits(rt: GpuRuntime, bufs: readonly (GpuBuf | null)[]): boolean {
  return bufs.every((b) => !b || b.length * 4 <= rt.maxBindingBytes);
}

/**
 * A matmul with an operand larger than one binding, as blocks of the product, each run by `run` with
 * operands that fit (a window of the matrix, or a copy of the block). The blocks cut M, N and K: starting
 * from the whole product, while an operand's block holds more than a binding, its longer side is cut to
 * what fits beside the other (in multiples of the alignment, so that rows start aligned). The LM head of
 * GPT-2 (V = 50257) gives:
 * - the logits x·wteᵀ: N (the vocabulary) is cut; each block of wte is whole rows (a window), each block of
 *   logits a block of columns, computed into a temporary and scattered into place;
 * - its input gradient dlogits·wte: K (the vocabulary) is cut; the dlogits columns of each block are
 *   gathered, wte's rows are a window, and the blocks' products add up in `out`;
 * - wte's gradient dlogitsᵀ·x: M (the vocabulary) is cut; dlogits' columns gathered, dwte's rows a window.
 * Blocks in K after the first accumulate, and the bias is added by the first.
 */
export function splitMatmul(rt: GpuRuntime, args: MatmulArgs, run: (args: MatmulArgs) => void): void {
  const { M, N, K: Kd } = args;
  const transA = !!args.transA, transB = !!args.transB;
  const a = args.a as GpuBuf, b = args.b as GpuBuf, out = args.out as GpuBuf;
  const bias = (args.bias ?? null) as GpuBuf | null;
  const limit = Math.floor(rt.maxBindingBytes / 4), align = rt.alignElements;
  const size = { m: M, n: N, k: Kd };
  // each operand's two sides: A is m × k, B k × n, out m × n (the bias, 1 × n, fits when out does)
  const operands = [["m", "k"], ["k", "n"], ["m", "n"]] as const;
  for (;;) {
    const over = operands.find(([x, y]) => size[x] * size[y] > limit);
    if (!over) break;
    const [x, y] = over;
    const [cut, other] = size[x] >= size[y] ? [x, y] : [y, x];
    const fit = Math.floor(limit / size[other]); // 0 when the other side alone is too long: cut to 1, then it
    size[cut] = Math.max(1, fit >= align ? Math.floor(fit / align) * align : fit);
  }
  const temps: GpuBuf[] = [];
  const bind = (x: Block, label: string) => {
    const r = bindBlock(rt, x, label);
    if (r.temp) temps.push(r.buf);
    return r.buf;
  };
  for (let m0 = 0; m0 < M; m0 += size.m) {
    const bm = Math.min(size.m, M - m0);
    for (let n0 = 0; n0 < N; n0 += size.n) {
      const bn = Math.min(size.n, N - n0);
      // the block of out: bound in place when it is whole rows, else computed into a temporary
      const outBlock: Block = { buf: out, off: m0 * N + n0, rows: bm, cols: bn, ld: N };
      const inPlace = (bn === N || bm === 1) && (out.offset / 4 + outBlock.off) % align === 0;
      for (let k0 = 0; k0 < Kd; k0 += size.k) {
        const bk = Math.min(size.k, Kd - k0);
        const first = k0 === 0;
        // stored A is [M,K] (or [K,M] with transA), stored B [K,N] (or [N,K] with transB)
        const aBlock: Block = transA
          ? { buf: a, off: k0 * M + m0, rows: bk, cols: bm, ld: M }
          : { buf: a, off: m0 * Kd + k0, rows: bm, cols: bk, ld: Kd };
        const bBlock: Block = transB
          ? { buf: b, off: n0 * Kd + k0, rows: bn, cols: bk, ld: Kd }
          : { buf: b, off: k0 * N + n0, rows: bk, cols: bn, ld: N };
        const biasBuf = bias && first
          ? bind({ buf: bias, off: n0, rows: 1, cols: bn, ld: N }, "matmul bias block")
          : null;
        const accumulate = !!args.accumulate || !first;
        const leaf = {
          a: bind(aBlock, "matmul A block"),
          b: bind(bBlock, "matmul B block"),
          M: bm,
          N: bn,
          K: bk,
          transA,
          transB,
          ...(biasBuf ? { bias: biasBuf } : {}),
        };
        if (inPlace) {
          run({ ...leaf, out: windowOf(out, outBlock.off, bm * bn), accumulate });
        } else {
          const tmp = rt.acquire(bm * bn, "f32", "matmul out block");
          run({ ...leaf, out: tmp, accumulate: false });
          copyBlock(rt, { buf: tmp, off: 0, rows: bm, cols: bn, ld: bn }, outBlock, accumulate);
          rt.release(tmp);
        }
        for (const t of temps.splice(0)) rt.release(t);
      }
    }
  }
}
