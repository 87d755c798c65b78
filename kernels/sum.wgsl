// sum.wgsl — the sum of a buffer, scaled: e.g. the mean loss from the per-row losses.
//
// Computes  out[0] (=|+=) s · Σ_i inp[i]  for i < n.
//
// Bindings:
//   0 p    uniform { n, s }
//   1 inp  [n]  read
//   2 out  [1]  `=`, or `+=` with ACCUMULATE
// Overrides: ACCUMULATE (bool).
// Dispatch: a single workgroup of 256. Invocation j sums i = j, j + 256, … in order; then a fixed tree
// in shared memory adds the 256 partial sums (deterministic). Fine for the N = B·T losses; for millions
// of elements use global_norm.wgsl's two-pass scheme.
// Matches: CpuBackend.sum (up to float32 summation order).

struct Params {
  n: u32,
  s: f32,
}

override ACCUMULATE: bool = false;

const WG = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let j = lid.x;
  var acc = 0.0;
  for (var i = j; i < p.n; i += WG) { acc += inp[i]; }
  red[j] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (j < s) { red[j] += red[j + s]; }
    workgroupBarrier();
  }
  if (j == 0u) {
    var v = red[0] * p.s;
    if (ACCUMULATE) { v += out[0]; }
    out[0] = v;
  }
}
