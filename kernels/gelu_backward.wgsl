// gelu_backward.wgsl — gradient of the MLP activation of gelu_forward.wgsl (the same ACTIVATION selector).
//
// Computes  dinp[i] (=|+=) act'(inp[i]) · dout[i]  for i < n, where act' is, by ACTIVATION:
//   0 gelu_new    0.5·(1 + th) + 0.5·x·(1 − th²)·√(2/π)·(1 + 3·0.044715·x²),
//                 th = tanh(u), u = √(2/π)·(x + 0.044715·x³)
//   1 gelu        Φ(x) + x·φ(x),  Φ(x) = 0.5·erfc(−x/√2),  φ(x) = e^{−x²/2}/√(2π)
//   2 relu        1 for x > 0, else 0 (0 at x = 0, as PyTorch)
//   3 silu        σ(x)·(1 + x·(1 − σ(x)))
//   4 quick_gelu  s + 1.702·x·s·(1 − s),  s = σ(1.702·x)
//
// Bindings:
//   0 p     uniform { n }
//   1 inp   [n]  read  (the forward's input, saved)
//   2 dout  [n]  read
//   3 dinp  [n]  `=`, or `+=` with ACCUMULATE (an activation gradient: normally `=`)
// Overrides: ACCUMULATE (bool), ACTIVATION (u32, above; default 0).
// Dispatch: workgroups of 256 along x, 2D grid beyond 65535 workgroups: i = gid.x + gid.y · nwg.x · 256.
// Matches: CpuBackend.geluBackward with the same `activation` (src/backend/cpu/activation.ts).
//
// safe_tanh, sigmoid and erfc_approx are those of gelu_forward.wgsl (erfc: Numerical Recipes' `erfcc`,
// relative error < 1.2e−7); the density's exponent uses x clamped to ±20, where φ is already 0 in float32.

struct Params {
  n: u32,
}

override ACCUMULATE: bool = false;
override ACTIVATION: u32 = 0u;

const SQRT_2_OVER_PI = 0.7978845608028654;
const INV_SQRT_2 = 0.7071067811865476;
const INV_SQRT_2PI = 0.3989422804014327;
const QUICK_GELU_SLOPE = 1.702;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

fn safe_tanh(u: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(clamp(-x, -80.0, 80.0)));
}

fn erfc_approx(z: f32) -> f32 {
  let a = min(abs(z), 10.0);
  let t = 1.0 / (1.0 + 0.5 * a);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let y = t * exp(-a * a + poly);
  return select(2.0 - y, y, z >= 0.0);
}

fn act_derivative(x: f32) -> f32 {
  if (ACTIVATION == 1u) {
    let xc = clamp(x, -20.0, 20.0);
    return 0.5 * erfc_approx(-x * INV_SQRT_2) + x * INV_SQRT_2PI * exp(-0.5 * xc * xc);
  }
  if (ACTIVATION == 2u) { return select(0.0, 1.0, x > 0.0); }
  if (ACTIVATION == 3u) {
    let s = sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
  }
  if (ACTIVATION == 4u) {
    let s = sigmoid(QUICK_GELU_SLOPE * x);
    return s + QUICK_GELU_SLOPE * x * s * (1.0 - s);
  }
  let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  let th = safe_tanh(u);
  let sech2 = 1.0 - th * th;
  return 0.5 * (1.0 + th) + 0.5 * x * sech2 * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var v = act_derivative(inp[i]) * dout[i];
  if (ACCUMULATE) { v += dinp[i]; }
  dinp[i] = v;
}
