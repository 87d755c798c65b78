// sum_rows.wgsl — column sums: the bias gradient of a linear layer.
//
// Computes  out[j] (=|+=) Σ_i inp[i, j]  over the M rows, for j < N (dbias[OC] = Σ over B·T rows of
// dout[B·T, OC]).
//
// Bindings:
//   0 p    uniform { M, N }
//   1 inp  [M,N]  read
//   2 out  [N]    `=`, or `+=` with ACCUMULATE (a parameter gradient: normally `+=`)
// Overrides: ACCUMULATE (bool).
// Dispatch: one invocation per column j (workgroups of 64 along x; neighbouring invocations read
// neighbouring addresses). Each loops over the rows i = 0…M−1 in order, starting from out[j] when
// accumulating — the same additions in the same order as the CPU loop, so deterministic.
// Matches: CpuBackend.sumRows.

struct Params {
  M: u32,
  N: u32,
}

override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x + gid.y * nwg.x * 64u;
  if (j >= p.N) { return; }
  var acc = 0.0;
  if (ACCUMULATE) { acc = out[j]; }
  for (var i = 0u; i < p.M; i++) {
    acc += inp[i * p.N + j];
  }
  out[j] = acc;
}
