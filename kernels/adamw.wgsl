// adamw.wgsl — one AdamW step (torch.optim.AdamW) with gradient-norm clipping folded in.
//
// For i < n, with 1 − β1, 1 − β2, bc1 = 1 − β1^step and bc2 = 1 − β2^step computed on the host in float64
// (1 − β2 computed in float32 from β2 = 0.999 rounded to float32 would be off by 1.3e-5 relative):
//   clip   = min(1, max_norm / (norm[0] + 1e-6))           (1 when HAS_NORM is false)
//   g      = grad[i] · clip
//   param *= 1 − lr · weight_decay                         (decoupled weight decay, applied first)
//   m      = β1·m + (1 − β1)·g
//   v      = β2·v + (1 − β2)·g²
//   param -= (lr / bc1) · m / (√v / √bc2 + eps)            (torch's order of operations)
//
// Bindings:
//   0 p      uniform { n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, max_norm, one_minus_beta1,
//                      one_minus_beta2 }
//   1 param  [n]  read_write (updated in place)
//   2 grad   [n]  read
//   3 m      [n]  read_write (first moment)
//   4 v      [n]  read_write (second moment)
//   5 norm   [1]  read (the global gradient norm from global_norm.wgsl; ignored unless HAS_NORM)
// Overrides: HAS_NORM (bool).
// Dispatch: one invocation per element, workgroups of 256, 2D grid beyond 65535 workgroups.
// Matches: CpuBackend.adamw.

struct Params {
  n: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weight_decay: f32,
  bc1: f32,
  bc2: f32,
  max_norm: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
}

override HAS_NORM: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> norm: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var clip = 1.0;
  if (HAS_NORM) { clip = min(1.0, p.max_norm / (norm[0] + 1e-6)); }
  let g = grad[i] * clip;
  var w = param[i];
  w *= 1.0 - p.lr * p.weight_decay;
  let mi = p.beta1 * m[i] + p.one_minus_beta1 * g;
  let vi = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  w -= (p.lr / p.bc1) * mi / (sqrt(vi) / sqrt(p.bc2) + p.eps);
  param[i] = w;
}
