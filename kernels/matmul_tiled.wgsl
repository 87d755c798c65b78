// matmul_tiled.wgsl — the fast matrix product: shared-memory tiles and a 4×4 register block per thread.
//
// Computes  out[m,n] (=|+=) Σ_k A(m,k)·B(k,n) (+ bias[n])  for m < M, n < N, where
//   A(m,k) = a[m·K + k]            (a stored [M,K])     or, with TRANS_A, a[k·M + m]  (a stored [K,M])
//   B(k,n) = b[k·N + n]            (b stored [K,N])     or, with TRANS_B, b[n·K + k]  (b stored [N,K])
// Same contract as matmul_naive.wgsl (read that one first).
//
// Bindings:
//   0 p     uniform  { M, N, K, KC }   (KC: the depth one workgroup sums, K unless SPLIT_K)
//   1 a     [M,K] or [K,M] (TRANS_A)                       read
//   2 b     [K,N] or [N,K] (TRANS_B)                       read
//   3 bias  [N] (ignored unless HAS_BIAS; bind any buffer)  read
//   4 out   [M,N]                                          `=`, or `+=` with ACCUMULATE
//           with SPLIT_K: [S,M,N] partial products, `=` (no bias, no accumulate: split_k_reduce.wgsl adds them)
// Overrides: TRANS_A, TRANS_B, HAS_BIAS, ACCUMULATE, SPLIT_K (bool).
// Dispatch: workgroups of 16×16 = 256 invocations; grid (ceil(N/64), ceil(M/64), S) with S = ceil(K/KC)
// (S = 1 without SPLIT_K). Workgroup (X, Y, Z) sums k in [Z·KC, min(K, (Z+1)·KC)) and owns
// the 64×64 output block out[64Y … 64Y+63, 64X … 64X+63]; invocation (tx, ty) owns the 4×4 sub-block at
// rows 64Y + 4ty + i, columns 64X + 4tx + j (i, j < 4).
// Matches: CpuBackend.matmul (src/backend/cpu.ts), up to float32 summation order (k runs in order
// 0…K−1 within each invocation, so the result is deterministic run to run).
//
// How it works. The K axis is walked in steps of BK = 16. At each step the 256 invocations together copy
// a 64×16 tile of A and a 16×64 tile of B from global memory into workgroup (shared) memory — one vec4
// (4 floats) each per tile — then every invocation does 16 rank-1 updates of its 4×4 block, reading
// vec4s from shared memory. Each float loaded from global memory is therefore used 64 times instead of
// once (the naive kernel), and the 16 accumulators live in registers. Edges: loads outside the matrix
// read 0 (so partial tiles contribute nothing) and stores outside it are skipped, so M, N, K need not
// be multiples of anything.
//
// Split-K. A product with a small output and a long K (the LM head's backward dx = dlogits·wte: 32×768
// outputs, K = 21191) has few 64×64 blocks — 12 workgroups for a GPU with a hundred cores — each walking
// all of K. With SPLIT_K the grid gets a third axis: S workgroups per block each sum one slice of K (KC a
// multiple of BK, so tiles never straddle slices) into their own [M,N] slab, and split_k_reduce.wgsl adds
// the S slabs in order (deterministic), with the bias and `+=`.
//
// Tried and dropped: binding `b` a second time as array<vec4<f32>> for 16-byte global loads when N % 4 = 0.
// On lavapipe it measured no faster under wgpu and slower under Dawn (see kernels/README.md), so the
// global loads stay scalar and the vec4s are formed in shared memory.

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

const BM = 64u; // rows of out per workgroup
const BN = 64u; // columns of out per workgroup
const BK = 16u; // depth of one tile step

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// As[k·16 + q] holds A(m0 + 4q … m0 + 4q + 3, k0 + k): the A tile stored k-major, 4 rows per vec4.
// Bs[k·16 + q] holds B(k0 + k, n0 + 4q … n0 + 4q + 3): the B tile, 4 columns per vec4.
var<workgroup> As: array<vec4<f32>, 256>; // BK × BM / 4
var<workgroup> Bs: array<vec4<f32>, 256>; // BK × BN / 4

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

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx; // 0 … 255
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;

  // Which vec4 of each tile this invocation loads. The mapping follows the memory layout so that
  // neighbouring invocations read neighbouring addresses (coalesced loads on a real GPU):
  //   A stored [M,K] (k contiguous): invocation → (q = tid / 16, k = tid % 16)
  //   A stored [K,M] (m contiguous): invocation → (k = tid / 16, q = tid % 16), 4 consecutive floats
  // and likewise for B.
  var a_k = tid % 16u;
  var a_q = tid / 16u;
  if (TRANS_A) { a_k = tid / 16u; a_q = tid % 16u; }
  var b_k = tid / 16u;
  var b_q = tid % 16u;
  if (TRANS_B) { b_k = tid % 16u; b_q = tid / 16u; }

  // acc[i] holds out(row 4ty + i, columns 4tx … 4tx + 3) of this workgroup's block.
  var acc = array<vec4<f32>, 4>(vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));

  // this workgroup's slice of K (all of it unless SPLIT_K), in whole tiles
  let kbeg = wg.z * p.KC;
  let kend = min(p.K, kbeg + p.KC);
  let tiles = (kend - kbeg + BK - 1u) / BK;
  for (var t = 0u; t < tiles; t++) {
    let k0 = kbeg + t * BK;
    // ---- stage the tiles in shared memory ----
    let am = m0 + 4u * a_q;
    let ak = k0 + a_k;
    As[a_k * 16u + a_q] = vec4(load_a(am, ak), load_a(am + 1u, ak), load_a(am + 2u, ak), load_a(am + 3u, ak));
    let bn = n0 + 4u * b_q;
    let bk = k0 + b_k;
    Bs[b_k * 16u + b_q] = vec4(load_b(bk, bn), load_b(bk, bn + 1u), load_b(bk, bn + 2u), load_b(bk, bn + 3u));
    workgroupBarrier();

    // ---- 16 rank-1 updates of the 4×4 register block ----
    for (var k = 0u; k < BK; k++) {
      let av = As[k * 16u + ty]; // A(4ty + 0…3, k)
      let bv = Bs[k * 16u + tx]; // B(k, 4tx + 0…3)
      acc[0] += av.x * bv;
      acc[1] += av.y * bv;
      acc[2] += av.z * bv;
      acc[3] += av.w * bv;
    }
    workgroupBarrier(); // everyone is done reading before the next tile overwrites shared memory
  }

  // ---- write the 4×4 block, skipping what falls outside out[M,N] ----
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * ty + i;
    if (m >= p.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + 4u * tx + j;
      if (n >= p.N) { break; }
      var v = acc[i][j];
      let o = m * p.N + n;
      if (SPLIT_K) {
        out[wg.z * p.M * p.N + o] = v; // this slice's partial sum; the reduce adds bias and `+=`
        continue;
      }
      if (HAS_BIAS) { v += bias[n]; }
      if (ACCUMULATE) { v += out[o]; }
      out[o] = v;
    }
  }
}
