// matmul_large.wgsl — the big-tile matrix product: 128×128 blocks, an 8×8 register block per thread, and
// double-buffered shared memory.
//
// Computes  out[m,n] (=|+=) Σ_k A(m,k)·B(k,n) (+ bias[n])  for m < M, n < N, where
//   A(m,k) = a[m·K + k]            (a stored [M,K])     or, with TRANS_A, a[k·M + m]  (a stored [K,M])
//   B(k,n) = b[k·N + n]            (b stored [K,N])     or, with TRANS_B, b[n·K + k]  (b stored [N,K])
// Same contract, bindings and overrides as matmul_tiled.wgsl (read that one first; this one adds two ideas).
//
// Bindings:
//   0 p     uniform  { M, N, K, KC }   (KC: the depth one workgroup sums, K unless SPLIT_K)
//   1 a     [M,K] or [K,M] (TRANS_A)                       read
//   2 b     [K,N] or [N,K] (TRANS_B)                       read
//   3 bias  [N] (ignored unless HAS_BIAS; bind any buffer)  read
//   4 out   [M,N]                                          `=`, or `+=` with ACCUMULATE
//           with SPLIT_K: [S,M,N] partial products (as matmul_tiled.wgsl; split_k_reduce.wgsl adds them)
// Overrides: TRANS_A, TRANS_B, HAS_BIAS, ACCUMULATE, SPLIT_K (bool).
// Dispatch: workgroups of 16×16 = 256 invocations; grid (ceil(N/128), ceil(M/128), S), S = ceil(K/KC) slices
// of K (1 without SPLIT_K; KC a multiple of BK). Workgroup (X, Y, Z) sums k in [Z·KC, min(K, (Z+1)·KC)) and owns
// out[128Y … 128Y+127, 128X … 128X+127]. Invocation (tx, ty) owns an 8×8 block split in four 4×4 quarters:
// rows 128Y + 4ty + i and 128Y + 64 + 4ty + i, columns 128X + 4tx + j and 128X + 64 + 4tx + j (i, j < 4).
// Matches: CpuBackend.matmul (src/backend/cpu.ts), up to float32 summation order (k in order 0…K−1 in
// every invocation: deterministic run to run).
//
// Idea 1, more work per load. Per step of k, an invocation reads 4 vec4s from shared memory (2 of A, 2 of
// B) and does 64 multiply-adds with them; matmul_tiled's 4×4 block does 16 per 2 vec4s. Shared-memory
// traffic, not arithmetic, is what limits a tiled matmul, so doubling the work per byte read is the main
// win. The split into quarters 64 apart (instead of 8 adjacent rows) keeps the shared loads of
// neighbouring invocations on neighbouring addresses.
//
// Idea 2, double buffering. Shared memory holds two copies of each tile. While the workgroup multiplies
// the tiles of step t (copy t mod 2), each invocation has already issued its global loads for step t+1
// into registers; after the multiply it stores them into the other copy. Global-memory latency hides
// behind the arithmetic, and one barrier per step suffices: the barrier that ends step t−1 guarantees
// everyone has finished reading the copy that step t overwrites.
//
// Costs: 128×128 blocks give few workgroups when M or N is small (1024×768 is 8×6 = 48 workgroups), which
// can leave a large GPU partly idle; matmul_tiled's 64×64 blocks give 4× as many, and SPLIT_K (see
// matmul_tiled.wgsl) multiplies them by the number of K slices. Which wins depends on the GPU and the
// shape: `bench/bench.ts --matmul-kernels` measures the kernels, and `GPT2_SFT_MATMUL=tune` times them,
// split or not, per shape on the GPU at hand.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  KC: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override SPLIT_K: bool = false;

const BM = 128u; // rows of out per workgroup
const BN = 128u; // columns of out per workgroup
const BK = 8u; // depth of one tile step

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// As[s][k·32 + q] holds A(m0 + 4q … m0 + 4q + 3, k0 + k) of copy s: the A tile k-major, 4 rows per vec4.
// Bs[s][k·32 + q] holds B(k0 + k, n0 + 4q … n0 + 4q + 3): the B tile, 4 columns per vec4.
var<workgroup> As: array<array<vec4<f32>, 256>, 2>; // 2 copies × BK × BM / 4
var<workgroup> Bs: array<array<vec4<f32>, 256>, 2>; // 2 copies × BK × BN / 4

// A(m, k) with zero outside the matrix.
fn load_a(m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  if (TRANS_A) { return a[k * p.M + m]; }
  return a[m * p.K + k];
}

// B(k, n) with zero outside the matrix.
fn load_b(k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) { return 0.0; }
  if (TRANS_B) { return b[n * p.K + k]; }
  return b[k * p.N + n];
}

// Write out(m, n0 … n0 + 3) from v, skipping columns outside the matrix; with SPLIT_K, slice z's partial
// sums into its own [M,N] slab (no bias, no `+=`: the reduce does those).
fn store4(m: u32, n0: u32, v: vec4<f32>, z: u32) {
  if (m >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j;
    if (n >= p.N) { return; }
    var x = v[j];
    let o = m * p.N + n;
    if (SPLIT_K) {
      out[z * p.M * p.N + o] = x;
      continue;
    }
    if (HAS_BIAS) { x += bias[n]; }
    if (ACCUMULATE) { x += out[o]; }
    out[o] = x;
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx; // 0 … 255
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;

  // Which vec4 of each tile this invocation loads (one of A, one of B per step), following the memory
  // layout so that neighbouring invocations read neighbouring addresses:
  //   A stored [M,K] (k contiguous): (q = tid / 8, k = tid % 8);  stored [K,M]: (k = tid / 32, q = tid % 32)
  //   B stored [K,N] (n contiguous): (k = tid / 32, q = tid % 32); stored [N,K]: (q = tid / 8, k = tid % 8)
  var a_k = tid % 8u;
  var a_q = tid / 8u;
  if (TRANS_A) { a_k = tid / 32u; a_q = tid % 32u; }
  var b_k = tid / 32u;
  var b_q = tid % 32u;
  if (TRANS_B) { b_k = tid % 8u; b_q = tid / 8u; }
  let am = m0 + 4u * a_q;
  let bn = n0 + 4u * b_q;

  // acc[2i + h]: row 4ty + i (i < 4) or 64 + 4ty + (i − 4) (i ≥ 4), columns 4tx … 4tx + 3 (h = 0) or
  // 64 + 4tx … 64 + 4tx + 3 (h = 1).
  // Every index into acc below is a constant, so that the compiler can keep it in registers (a dynamic index
  // would move the array to slow per-thread memory on most GPUs). WGSL zero-initialises it.
  var acc: array<vec4<f32>, 16>;

  // this workgroup's slice of K (all of it unless SPLIT_K), in whole tiles; the prefetch of the tile
  // after the slice's last reads the next slice's (or zeros past K) and is never used
  let kbeg = wg.z * p.KC;
  let ktiles = (min(p.K, kbeg + p.KC) - kbeg + BK - 1u) / BK;

  // ---- prologue: tile 0 into copy 0 ----
  let ak0 = kbeg + a_k;
  let bk0 = kbeg + b_k;
  As[0][a_k * 32u + a_q] = vec4(load_a(am, ak0), load_a(am + 1u, ak0), load_a(am + 2u, ak0), load_a(am + 3u, ak0));
  Bs[0][b_k * 32u + b_q] = vec4(load_b(bk0, bn), load_b(bk0, bn + 1u), load_b(bk0, bn + 2u), load_b(bk0, bn + 3u));
  workgroupBarrier();

  for (var t = 0u; t < ktiles; t++) {
    let s = t % 2u;
    // ---- issue the global loads of tile t + 1 (zeros past the end of K) ----
    let ak = kbeg + (t + 1u) * BK + a_k;
    let next_a = vec4(load_a(am, ak), load_a(am + 1u, ak), load_a(am + 2u, ak), load_a(am + 3u, ak));
    let bk = kbeg + (t + 1u) * BK + b_k;
    let next_b = vec4(load_b(bk, bn), load_b(bk, bn + 1u), load_b(bk, bn + 2u), load_b(bk, bn + 3u));

    // ---- 8 rank-1 updates of the 8×8 register block from copy s ----
    for (var k = 0u; k < BK; k++) {
      let a0 = As[s][k * 32u + ty]; // A(4ty + 0…3, k)
      let a1 = As[s][k * 32u + 16u + ty]; // A(64 + 4ty + 0…3, k)
      let b0 = Bs[s][k * 32u + tx]; // B(k, 4tx + 0…3)
      let b1 = Bs[s][k * 32u + 16u + tx]; // B(k, 64 + 4tx + 0…3)
      acc[0] += a0.x * b0;
      acc[1] += a0.x * b1;
      acc[2] += a0.y * b0;
      acc[3] += a0.y * b1;
      acc[4] += a0.z * b0;
      acc[5] += a0.z * b1;
      acc[6] += a0.w * b0;
      acc[7] += a0.w * b1;
      acc[8] += a1.x * b0;
      acc[9] += a1.x * b1;
      acc[10] += a1.y * b0;
      acc[11] += a1.y * b1;
      acc[12] += a1.z * b0;
      acc[13] += a1.z * b1;
      acc[14] += a1.w * b0;
      acc[15] += a1.w * b1;
    }

    // ---- tile t + 1 into the other copy; the barrier also ends everyone's reads of copy s ----
    As[1u - s][a_k * 32u + a_q] = next_a;
    Bs[1u - s][b_k * 32u + b_q] = next_b;
    workgroupBarrier();
  }

  // ---- write the 8×8 block: 8 rows, two runs of 4 columns each ----
  let r = m0 + 4u * ty;
  let c0 = n0 + 4u * tx;
  let c1 = c0 + 64u;
  store4(r, c0, acc[0], wg.z);
  store4(r, c1, acc[1], wg.z);
  store4(r + 1u, c0, acc[2], wg.z);
  store4(r + 1u, c1, acc[3], wg.z);
  store4(r + 2u, c0, acc[4], wg.z);
  store4(r + 2u, c1, acc[5], wg.z);
  store4(r + 3u, c0, acc[6], wg.z);
  store4(r + 3u, c1, acc[7], wg.z);
  store4(r + 64u, c0, acc[8], wg.z);
  store4(r + 64u, c1, acc[9], wg.z);
  store4(r + 65u, c0, acc[10], wg.z);
  store4(r + 65u, c1, acc[11], wg.z);
  store4(r + 66u, c0, acc[12], wg.z);
  store4(r + 66u, c1, acc[13], wg.z);
  store4(r + 67u, c0, acc[14], wg.z);
  store4(r + 67u, c1, acc[15], wg.z);
}
