// matmul_naive.wgsl — the plain matrix product, one invocation per output element.
//
// Computes  out[m,n] (=|+=) Σ_k A(m,k)·B(k,n) (+ bias[n])  for m < M, n < N, where
//   A(m,k) = a[m·K + k]            (a stored [M,K])     or, with TRANS_A, a[k·M + m]  (a stored [K,M])
//   B(k,n) = b[k·N + n]            (b stored [K,N])     or, with TRANS_B, b[n·K + k]  (b stored [N,K])
// In GPT-2 terms: a linear layer's forward is inp[B·T, C] · w[C, OC] (+ bias[OC]); its backward uses
// dinp = dout · wᵀ (TRANS_B) and dw = inpᵀ · dout (TRANS_A).
//
// Bindings:
//   0 p     uniform  { M, N, K }
//   1 a     [M,K] or [K,M] (TRANS_A)                       read
//   2 b     [K,N] or [N,K] (TRANS_B)                       read
//   3 bias  [N] (ignored unless HAS_BIAS; bind any buffer)  read
//   4 out   [M,N]                                          `=`, or `+=` with ACCUMULATE
// Overrides: TRANS_A, TRANS_B, HAS_BIAS, ACCUMULATE (bool).
// Dispatch: workgroups of 16×16; grid (ceil(N/16), ceil(M/16)); invocation (x, y) computes out[y, x].
// The k loop runs 0…K−1 in order, so the result is deterministic.
// Matches: CpuBackend.matmul (src/backend/cpu.ts). This version is for reading; matmul_tiled.wgsl is the
// fast one with the same contract.

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn load_a(m: u32, k: u32) -> f32 {
  if (TRANS_A) { return a[k * p.M + m]; }
  return a[m * p.K + k];
}

fn load_b(k: u32, n: u32) -> f32 {
  if (TRANS_B) { return b[n * p.K + k]; }
  return b[k * p.N + n];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  if (m >= p.M || n >= p.N) { return; }
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    acc += load_a(m, k) * load_b(k, n);
  }
  if (HAS_BIAS) { acc += bias[n]; }
  let i = m * p.N + n;
  if (ACCUMULATE) { acc += out[i]; }
  out[i] = acc;
}
