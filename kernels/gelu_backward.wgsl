// gelu_backward.wgsl — gradient of `gelu_new` (see gelu_forward.wgsl).
//
// With u = √(2/π)·(x + 0.044715·x³) and th = tanh(u):
//   gelu(x)  = 0.5·x·(1 + th)
//   gelu'(x) = 0.5·(1 + th) + 0.5·x·(1 − th²)·√(2/π)·(1 + 3·0.044715·x²)
// Computes  dinp[i] (=|+=) gelu'(inp[i]) · dout[i]  for i < n.
//
// Bindings:
//   0 p     uniform { n }
//   1 inp   [n]  read  (the forward's input, saved)
//   2 dout  [n]  read
//   3 dinp  [n]  `=`, or `+=` with ACCUMULATE (an activation gradient: normally `=`)
// Overrides: ACCUMULATE (bool).
// Dispatch: workgroups of 256 along x, 2D grid beyond 65535 workgroups: i = gid.x + gid.y · nwg.x · 256.
// Matches: CpuBackend.geluBackward.

struct Params {
  n: u32,
}

override ACCUMULATE: bool = false;

const SQRT_2_OVER_PI = 0.7978845608028654;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

fn safe_tanh(u: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let x = inp[i];
  let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  let th = safe_tanh(u);
  let sech2 = 1.0 - th * th;
  let grad = 0.5 * (1.0 + th) + 0.5 * x * sech2 * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
  var v = grad * dout[i];
  if (ACCUMULATE) { v += dinp[i]; }
  dinp[i] = v;
}
