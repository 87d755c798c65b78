/**
 * A WebAssembly SIMD matmul, the CPU backend's fallback when no BLAS loads (no library, no FFI): 128-bit
 * lanes, a 4×8 register tile, on the calling thread (the backend splits big products over its helper
 * threads, each with its own instance: threads.ts). It is a strided GEMM (`C = alpha·op(A)·op(B) +
 * beta·C` on sub-matrices, as `cblas_sgemm`), so everything the BLAS path does with products — attention
 * per head, bias gradients — runs on it too. The module is ~300 bytes, assembled below by hand (there is
 * no WASM toolchain in this project), so every instruction is visible.
 *
 * Layout: the operands are packed into WASM memory so the kernel never branches on transposition or edges:
 * - Ap: A in row blocks of 4, `Ap[ib][k][r] = A(4·ib + r, k)` (rows past M are 0);
 * - Bp: B in column panels of 8, `Bp[jb][k][c] = B(k, 8·jb + c)` (columns past N are 0);
 * - Cp: `[4·mb, 8·nb]` row-major, written with `=`; copying it out applies alpha and beta.
 * Kernel: for each panel jb, for each row block ib: eight f32x4 accumulators c[r][h] (row r, half h) and
 * `c[r][h] += splat(Ap[ib][k][r]) · Bp[jb][k][4h … 4h+3]` over k. The B panel (K·32 bytes) stays in L1/L2
 * while the row blocks stream past it.
 *
 * Numerics: float32 accumulation in k order (like BLAS, unlike the float64 reference).
 * @module
 */

import { type DenseMatmulArgs, type FastMatmul, matmulViaGemm, type StridedGemmArgs } from "./matmul.ts";

import { I32, simd, sleb, uleb, V128, wasmModule } from "./wasm_asm.ts";

// opcodes
const BLOCK_VOID = 0x40, LOOP = 0x03, END = 0x0b, BR_IF = 0x0d;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_CONST = 0x41, I32_ADD = 0x6a, I32_SUB = 0x6b, I32_MUL = 0x6c, I32_SHL = 0x74, I32_LT_U = 0x49;
const V128_LOAD = 0x00, V128_LOAD32_SPLAT = 0x09, V128_STORE = 0x0b, V128_CONST = 0x0c;
const F32X4_ADD = 0xe4, F32X4_MUL = 0xe6;

// locals: params, then i32s, then v128s
const AP = 0, BP = 1, CP = 2, MB = 3, NB = 4, K = 5;
const JB = 6, IB = 7, PA = 8, PB = 9, KK = 10, BASE = 11, RS = 12;
const C0 = 13, B0 = 21, B1 = 22, AV = 23;

/** The kernel's body: `mm(ap, bp, cp, mb, nb, K)` with K, mb, nb ≥ 1 (byte addresses). */
function kernelBody(): number[] {
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const i32 = (n: number) => [I32_CONST, ...sleb(n)]; // i32.const takes a signed LEB128
  const memarg = (align: number, offset: number) => [align, ...uleb(offset)];
  const c: number[] = [];
  c.push(...get(NB), ...i32(32), I32_MUL, ...set(RS)); // row stride of Cp in bytes
  c.push(...i32(0), ...set(JB));
  c.push(LOOP, BLOCK_VOID); // J
  c.push(...i32(0), ...set(IB));
  c.push(LOOP, BLOCK_VOID); // I
  // pa = ap + ib·K·16; pb = bp + jb·K·32
  c.push(...get(AP), ...get(IB), ...get(K), I32_MUL, ...i32(4), I32_SHL, I32_ADD, ...set(PA));
  c.push(...get(BP), ...get(JB), ...get(K), I32_MUL, ...i32(5), I32_SHL, I32_ADD, ...set(PB));
  for (let r = 0; r < 8; r++) c.push(...simd(V128_CONST), ...new Array(16).fill(0), ...set(C0 + r));
  c.push(...get(K), ...set(KK));
  c.push(LOOP, BLOCK_VOID); // K
  c.push(...get(PB), ...simd(V128_LOAD), ...memarg(2, 0), ...set(B0));
  c.push(...get(PB), ...simd(V128_LOAD), ...memarg(2, 16), ...set(B1));
  for (let r = 0; r < 4; r++) {
    c.push(...get(PA), ...simd(V128_LOAD32_SPLAT), ...memarg(2, 4 * r), ...set(AV));
    for (let h = 0; h < 2; h++) {
      const acc = C0 + 2 * r + h;
      c.push(...get(acc), ...get(AV), ...get(h ? B1 : B0), ...simd(F32X4_MUL), ...simd(F32X4_ADD), ...set(acc));
    }
  }
  c.push(...get(PA), ...i32(16), I32_ADD, ...set(PA));
  c.push(...get(PB), ...i32(32), I32_ADD, ...set(PB));
  c.push(...get(KK), ...i32(1), I32_SUB, LOCAL_TEE, KK, BR_IF, 0);
  c.push(END); // K
  // base = cp + ib·4·rs + jb·32; store the 4×8 tile
  c.push(...get(CP), ...get(IB), ...get(RS), I32_MUL, ...i32(2), I32_SHL, I32_ADD);
  c.push(...get(JB), ...i32(5), I32_SHL, I32_ADD, ...set(BASE));
  for (let r = 0; r < 4; r++) {
    c.push(...get(BASE), ...get(C0 + 2 * r), ...simd(V128_STORE), ...memarg(2, 0));
    c.push(...get(BASE), ...get(C0 + 2 * r + 1), ...simd(V128_STORE), ...memarg(2, 16));
    c.push(...get(BASE), ...get(RS), I32_ADD, ...set(BASE));
  }
  c.push(...get(IB), ...i32(1), I32_ADD, LOCAL_TEE, IB, ...get(MB), I32_LT_U, BR_IF, 0);
  c.push(END); // I
  c.push(...get(JB), ...i32(1), I32_ADD, LOCAL_TEE, JB, ...get(NB), I32_LT_U, BR_IF, 0);
  c.push(END); // J
  c.push(END); // function
  return c;
}

/** The whole module: imports memory `env.mem`, exports `mm`. */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  const body = [2, 7, I32, 11, V128, ...kernelBody()]; // locals: 7 i32, 11 v128
  return wasmModule([{ name: "mm", params: [I32, I32, I32, I32, I32, I32], body }]);
}

/** The WASM SIMD matmul, or the reason it cannot run (no WebAssembly, or no SIMD support). */
export function wasmSimdMatmul(): FastMatmul | { reason: string } {
  let mm: (ap: number, bp: number, cp: number, mb: number, nb: number, K: number) => void;
  const mem = new WebAssembly.Memory({ initial: 1 });
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), { env: { mem } });
    mm = inst.exports.mm as typeof mm;
  } catch (e) {
    return { reason: `WebAssembly SIMD is not available: ${e instanceof Error ? e.message : String(e)}` };
  }

  /** `C = alpha·op(A)·op(B) + beta·C` on strided operands (StridedGemmArgs), through the packed kernel. */
  function gemm(g: StridedGemmArgs): void {
    const { M, N, K, a, b, c, lda, ldb, ldc, aOffset, bOffset, cOffset } = g;
    if (M <= 0 || N <= 0) return;
    const mb = Math.ceil(M / 4), nb = Math.ceil(N / 8);
    const apLen = mb * 4 * K, bpLen = nb * 8 * K, ldp = nb * 8, cpLen = mb * 4 * ldp;
    const bytes = 4 * (apLen + bpLen + cpLen);
    if (bytes > 2 ** 32 - 65536) throw new Error(`Cannot run the WASM matmul: ${bytes} bytes exceed 4 GiB`);
    if (mem.buffer.byteLength < bytes) mem.grow(Math.ceil((bytes - mem.buffer.byteLength) / 65536));
    const f = new Float32Array(mem.buffer);
    const ap = f.subarray(0, apLen), bp = f.subarray(apLen, apLen + bpLen);
    const cp = f.subarray(apLen + bpLen, apLen + bpLen + cpLen);
    // pack A: Ap[ib][k][r] = A(4ib + r, k); the rows past M in the last block are 0
    if (M % 4) ap.fill(0, (mb - 1) * 4 * K);
    if (g.transA) {
      for (let k = 0; k < K; k++) {
        const src = aOffset + k * lda;
        for (let i = 0; i < M; i++) ap[((i >> 2) * K + k) * 4 + (i & 3)] = a[src + i]!;
      }
    } else {
      for (let i = 0; i < M; i++) {
        const src = aOffset + i * lda, dst = (i >> 2) * K * 4 + (i & 3);
        for (let k = 0; k < K; k++) ap[dst + 4 * k] = a[src + k]!;
      }
    }
    // pack B: Bp[jb][k][c] = B(k, 8jb + c); the columns past N in the last panel are 0
    if (N % 8) bp.fill(0, (nb - 1) * 8 * K);
    if (g.transB) {
      for (let j = 0; j < N; j++) {
        const src = bOffset + j * ldb, dst = (j >> 3) * K * 8 + (j & 7);
        for (let k = 0; k < K; k++) bp[dst + 8 * k] = b[src + k]!;
      }
    } else {
      for (let k = 0; k < K; k++) {
        const src = bOffset + k * ldb;
        for (let j = 0; j < N; j++) bp[((j >> 3) * K + k) * 8 + (j & 7)] = b[src + j]!;
      }
    }
    if (K > 0) mm(0, 4 * apLen, 4 * (apLen + bpLen), mb, nb, K);
    else cp.fill(0);
    // copy out: C = alpha·P + beta·C (C is not read when beta = 0, as in BLAS)
    const { alpha, beta } = g;
    for (let i = 0; i < M; i++) {
      const o = cOffset + i * ldc, s = i * ldp;
      if (alpha === 1 && beta === 0) c.set(cp.subarray(s, s + N), o);
      else if (alpha === 1 && beta === 1) { for (let j = 0; j < N; j++) c[o + j] = c[o + j]! + cp[s + j]!; }
      else if (beta === 0) { for (let j = 0; j < N; j++) c[o + j] = alpha * cp[s + j]!; }
      else for (let j = 0; j < N; j++) c[o + j] = alpha * cp[s + j]! + beta * c[o + j]!;
    }
  }

  return {
    kind: "wasm",
    description: "CPU (WebAssembly SIMD for matmul)",
    multithreaded: false,
    matmul: (args: DenseMatmulArgs) => matmulViaGemm(gemm, args),
    gemm,
    singleThreaded: <T>(fn: () => T): T => fn(), // it never uses more than the calling thread
  };
}
