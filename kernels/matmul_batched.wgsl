// matmul_batched.wgsl — many small matrix products in one dispatch, each read from and written to strided
// views of larger buffers: attention's Q·Kᵀ and P·V (and their gradients) for every (batch, head) at once,
// straight from the [B,T,3C] qkv buffer, without copying heads apart.
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash.
//
// For every z = b·NH + h (grid axis z) it computes
//   out[c0 + m·ldc + n] = alpha · Σ_k A(m,k)·B(k,n)      for m < M, n < N
//   A(m,k) = a[a0 + m·lda + k]     or, with TRANS_A, a[a0 + k·lda + m]
//   B(k,n) = b[b0 + k·ldb + n]     or, with TRANS_B, b[b0 + n·ldb + k]
// where each view starts at  x0 = x_0 + b·x_b + h·x_h  (x = a, b, c): a fixed offset (K starts C floats into
// a qkv row), one per batch row and one per head.
// The tiles, the 4×4 register block and the load mapping are matmul_tiled.wgsl's (read that one first); what
// is new is the leading dimensions (lda, ldb, ldc: the distance between rows, which BLAS calls the same),
// the per-z offsets, and two options attention needs.
//
// Example, the scores S = Q·Kᵀ of head h of batch row b (M = N = T, K = HS = C/NH):
//   A = Q:   a = qkv, lda = 3C, a_0 = 0, a_b = T·3C, a_h = HS        (q of token t: qkv[b, t, h·HS …])
//   B = Kᵀ:  b = qkv, TRANS_B, ldb = 3C, b_0 = C, b_b = T·3C, b_h = HS (k of token s: qkv[b, s, C + h·HS …])
//   out = S: att, ldc = T, c_0 = 0, c_b = NH·T², c_h = T²            (att[b, h, t, s])
// (WebGpuBackend.attentionForward / attentionBackward in src/backend/webgpu.ts set up all six products.)
//
//
// DROP_A (dropout on A): every element read from `a` is multiplied by its dropout factor, keep(i)·drop_scale
//   or 0, where i is the element's index in `a` and keep(i) = lowbias32(lowbias32(i) ^ drop_key) >=
//   drop_threshold: the hash of dropout.wgsl. With `a` = the [B,NH,T,T] probabilities, i is exactly the flat
//   index ((b·NH + h)·T + t)·T + s that attention_forward.wgsl hashes, so P̃ = dropout(P) is applied as it is
//   read and never stored.
// CAUSAL (which part of the product can be skipped, because it is zero or unused):
//   0  nothing;
//   1  only out(m, n) with n ≤ m is used: workgroups whose whole block lies above the diagonal (every
//      n > every m) write nothing (Q·Kᵀ, dout·Vᵀ: the future keys' scores are never read);
//   2  A(m, k) = 0 for k > m (A is lower triangular, like causal P): the sum stops at the block's last row;
//   3  A(m, k) = 0 for k < m (A is upper triangular, like Pᵀ): the sum starts at the block's first row.
//   Skipped terms are exact zeros, so the result is the one without skipping, bit for bit.
//
// Bindings:
//   0 p    uniform { M, N, K, NH, lda, ldb, ldc, a_0, a_b, a_h, b_0, b_b, b_h, c_0, c_b, c_h, alpha,
//                    drop_key, drop_threshold, drop_scale } (drop_* read only with DROP_A)
//   1 a    read
//   2 b    read
//   3 out  `=` (every out(m, n) of every z is written, except the blocks CAUSAL 1 skips)
// Overrides: TRANS_A, TRANS_B, DROP_A (bool), CAUSAL (u32, above).
// Dispatch: workgroups of 16×16; grid (ceil(N/64), ceil(M/64), B·NH).
// Matches: the CPU backend's attention (src/backend/cpu.ts), which computes the same sums as loops; k runs in
// order 0…K−1 within each invocation, as in matmul_tiled.wgsl (deterministic).

struct Params {
  M: u32,
  N: u32,
  K: u32,
  NH: u32,
  lda: u32,
  ldb: u32,
  ldc: u32,
  a_0: u32,
  a_b: u32,
  a_h: u32,
  b_0: u32,
  b_b: u32,
  b_h: u32,
  c_0: u32,
  c_b: u32,
  c_h: u32,
  alpha: f32,
  drop_key: u32,
  drop_threshold: u32,
  drop_scale: f32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override DROP_A: bool = false;
override CAUSAL: u32 = 0u;

const BM = 64u; // rows of out per workgroup
const BN = 64u; // columns of out per workgroup
const BK = 16u; // depth of one tile step

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<vec4<f32>, 256>; // BK × BM / 4, k-major, 4 rows per vec4 (as matmul_tiled.wgsl)
var<workgroup> Bs: array<vec4<f32>, 256>; // BK × BN / 4, 4 columns per vec4

// A(m, k) of the view starting at a0, zero outside the M×K matrix, dropped out with DROP_A.
fn load_a(a0: u32, m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  var i = a0 + m * p.lda + k;
  if (TRANS_A) { i = a0 + k * p.lda + m; }
  if (DROP_A) { return select(0.0, a[i] * p.drop_scale, dropout_hash(p.drop_key, i) >= p.drop_threshold); }
  return a[i];
}

// B(k, n) of the view starting at b0, zero outside the K×N matrix.
fn load_b(b0: u32, k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) { return 0.0; }
  if (TRANS_B) { return b[b0 + n * p.ldb + k]; }
  return b[b0 + k * p.ldb + n];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx;
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  // CAUSAL 1: a block entirely above the diagonal is never read (uniform across the workgroup: no barrier
  // has been reached yet, so returning here is allowed)
  if (CAUSAL == 1u && n0 > m0 + BM - 1u) { return; }

  // this z's views
  let bi = wg.z / p.NH;
  let hi = wg.z % p.NH;
  let a0 = p.a_0 + bi * p.a_b + hi * p.a_h;
  let b0 = p.b_0 + bi * p.b_b + hi * p.b_h;
  let c0 = p.c_0 + bi * p.c_b + hi * p.c_h;

  // the load mapping of matmul_tiled.wgsl: neighbouring invocations read neighbouring addresses
  var a_k = tid % 16u;
  var a_q = tid / 16u;
  if (TRANS_A) { a_k = tid / 16u; a_q = tid % 16u; }
  var b_k = tid / 16u;
  var b_q = tid % 16u;
  if (TRANS_B) { b_k = tid % 16u; b_q = tid / 16u; }

  // the range of k that can contribute: all of it, or (CAUSAL 2, 3) where this block's rows of A are not zero
  var kbeg = 0u;
  var kend = p.K;
  if (CAUSAL == 2u) { kend = min(p.K, m0 + BM); }
  if (CAUSAL == 3u) { kbeg = m0; } // a multiple of BK, so tiles start where they would anyway

  var acc = array<vec4<f32>, 4>(vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
  for (var k0 = kbeg; k0 < kend; k0 += BK) {
    let am = m0 + 4u * a_q;
    let ak = k0 + a_k;
    As[a_k * 16u + a_q] = vec4(load_a(a0, am, ak), load_a(a0, am + 1u, ak), load_a(a0, am + 2u, ak), load_a(a0, am + 3u, ak));
    let bn = n0 + 4u * b_q;
    let bk = k0 + b_k;
    Bs[b_k * 16u + b_q] = vec4(load_b(b0, bk, bn), load_b(b0, bk, bn + 1u), load_b(b0, bk, bn + 2u), load_b(b0, bk, bn + 3u));
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      let av = As[k * 16u + ty];
      let bv = Bs[k * 16u + tx];
      acc[0] += av.x * bv;
      acc[1] += av.y * bv;
      acc[2] += av.z * bv;
      acc[3] += av.w * bv;
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * ty + i;
    if (m >= p.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + 4u * tx + j;
      if (n >= p.N) { break; }
      out[c0 + m * p.ldc + n] = p.alpha * acc[i][j];
    }
  }
}
