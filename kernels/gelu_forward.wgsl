// gelu_forward.wgsl — GPT-2's activation, `gelu_new` (the tanh approximation).
//
// Computes  out[i] = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))  with x = inp[i], for i < n (n = B·T·4C
// in the MLP).
//
// Bindings:
//   0 p    uniform { n }
//   1 inp  [n]  read
//   2 out  [n]  `=`
// Dispatch: workgroups of 256 along x, 2D grid beyond 65535 workgroups: i = gid.x + gid.y · nwg.x · 256.
// Matches: CpuBackend.geluForward.
//
// tanh is written as 1 − 2/(exp(2u) + 1): WGSL's built-in tanh may return NaN for large |u| on some
// drivers (it is often computed as (e^u − e^−u)/(e^u + e^−u), which overflows); this form saturates to ±1.

struct Params {
  n: u32,
}

const SQRT_2_OVER_PI = 0.7978845608028654;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn safe_tanh(u: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let x = inp[i];
  let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  out[i] = 0.5 * x * (1.0 + safe_tanh(u));
}
