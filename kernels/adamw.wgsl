// adamw.wgsl — one AdamW step (torch.optim.AdamW) with gradient-norm clipping folded in.
//
// For i < n, with bc1 = 1 − β1^step and bc2 = 1 − β2^step computed on the host:
//   clip   = min(1, max_norm / (norm[0] + 1e-6))           (1 when HAS_NORM is false)
//   g      = grad[i] · clip
//   param -= lr · weight_decay · param                     (decoupled weight decay, applied first)
//   m      = β1·m + (1 − β1)·g
//   v      = β2·v + (1 − β2)·g²
//   param -= lr · (m / bc1) / (√(v / bc2) + eps)
//
// Bindings:
//   0 p      uniform { n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, max_norm }
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
  w -= p.lr * p.weight_decay * w;
  let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
  let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  w -= p.lr * (mi / p.bc1) / (sqrt(vi / p.bc2) + p.eps);
  param[i] = w;
}
