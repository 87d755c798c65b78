// split_k_reduce.wgsl — the second half of a split-K matrix product (see matmul_tiled.wgsl, SPLIT_K).
//
// The split product left S partial results, part[z, m, n] = Σ over k in slice z of A(m,k)·B(k,n). This
// adds them up and finishes the product as matmul_tiled.wgsl would have:
//   out[m,n] (=|+=) (part[0,m,n] + part[1,m,n] + … + part[S−1,m,n]) (+ bias[n])
// Slices are added in order z = 0, 1, …, so the result is the same run to run (but not bit-equal to the
// unsplit kernel, which adds the k terms in one running sum).
//
// Bindings:
//   0 p     uniform { MN (= M·N), N, S }
//   1 part  [S,M,N]  read
//   2 bias  [N] (ignored unless HAS_BIAS; bind any buffer)  read
//   3 out   [M,N]  `=`, or `+=` with ACCUMULATE
// Overrides: HAS_BIAS, ACCUMULATE (bool).
// Dispatch: one invocation per output element, workgroups of 256 along x; the element index is
// gid.x + gid.y · 256 · num_workgroups.x (a 2D grid when MN / 256 > 65535). Neighbouring invocations read
// neighbouring addresses of each slab.
// Matches: CpuBackend.matmul (up to float32 summation order).

struct Params {
  MN: u32,
  N: u32,
  S: u32,
}

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.MN) { return; }
  var v = 0.0;
  for (var z = 0u; z < p.S; z++) {
    v += part[z * p.MN + i];
  }
  if (HAS_BIAS) { v += bias[i % p.N]; }
  if (ACCUMULATE) { v += out[i]; }
  out[i] = v;
}
