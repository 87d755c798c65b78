// gelu_forward.wgsl — GPT-2's MLP activation: `gelu_new` (the tanh approximation), or another of the
// config's `activation_function`s, chosen by the ACTIVATION override.
//
// Computes  out[i] = act(x)  with x = inp[i], for i < n (n = B·T·4C in the MLP), where act is, by ACTIVATION:
//   0 gelu_new    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   1 gelu        x·Φ(x) = 0.5·x·erfc(−x/√2)  (the exact GELU; erfc approximated, see below)
//   2 relu        max(x, 0)
//   3 silu        x·σ(x),  σ(x) = 1/(1 + e^−x)
//   4 quick_gelu  x·σ(1.702·x)
// (the order of ACTIVATIONS in src/backend/backend.ts).
//
// Bindings:
//   0 p    uniform { n }
//   1 inp  [n]  read
//   2 out  [n]  `=`
// Overrides: ACTIVATION (u32, above; default 0).
// Dispatch: workgroups of 256 along x, 2D grid beyond 65535 workgroups: i = gid.x + gid.y · nwg.x · 256.
// Matches: CpuBackend.geluForward with the same `activation` (the float64 formulas of
// src/backend/cpu/activation.ts).
//
// tanh is written as 1 − 2/(exp(2u) + 1): WGSL's built-in tanh may return NaN for large |u| on some
// drivers (it is often computed as (e^u − e^−u)/(e^u + e^−u), which overflows); this form saturates to ±1.
// σ clamps its exponent to ±80 so that exp stays finite (WGSL lets a compiler assume no infinities).
// erfc has no WGSL built-in: erfc_approx is Numerical Recipes' Chebyshev fit (Press et al., Numerical Recipes
// in C, 2nd ed., §6.2, `erfcc`), erfc(z) ≈ t·exp(−z² − 1.26551223 + t·P(t)), t = 1/(1 + z/2), z ≥ 0, with a
// relative error below 1.2e−7 for every z (so GELU's left tail 0.5·x·erfc(|x|/√2) keeps its relative
// accuracy too); erfc(−z) = 2 − erfc(z).

struct Params {
  n: u32,
}

override ACTIVATION: u32 = 0u;

const SQRT_2_OVER_PI = 0.7978845608028654;
const INV_SQRT_2 = 0.7071067811865476;
const QUICK_GELU_SLOPE = 1.702;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn safe_tanh(u: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(clamp(-x, -80.0, 80.0)));
}

// erfc(z), relative error < 1.2e−7 (Numerical Recipes' erfcc; |z| clamped to 10, where erfc is 2e−45).
fn erfc_approx(z: f32) -> f32 {
  let a = min(abs(z), 10.0);
  let t = 1.0 / (1.0 + 0.5 * a);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let y = t * exp(-a * a + poly);
  return select(2.0 - y, y, z >= 0.0);
}

fn act(x: f32) -> f32 {
  if (ACTIVATION == 1u) { return 0.5 * x * erfc_approx(-x * INV_SQRT_2); }
  if (ACTIVATION == 2u) { return max(x, 0.0); }
  if (ACTIVATION == 3u) { return x * sigmoid(x); }
  if (ACTIVATION == 4u) { return x * sigmoid(QUICK_GELU_SLOPE * x); }
  let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + safe_tanh(u));
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  out[i] = act(inp[i]);
}
