// dropout.wgsl — inverted dropout (torch.nn.functional.dropout in training mode) and its gradient.
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash.
//
// Whether element i survives is a stateless counter-based hash of (seed, i), so the backward recomputes
// the mask instead of reading a saved one, and the CPU backend draws exactly the same mask:
//   h(i)     = lowbias32(lowbias32(i) ^ key)       key = lowbias32(seed ^ 0x9E3779B9), from the host
//   keep(i)  = h(i) >= threshold                   threshold = floor(p · 2^32), so P(keep) = 1 − p
//   scale    = fround(1 / (1 − p))                 (from the host)
// Computes, for i < n:
//   forward_main:   out[i]         = keep(i) ? inp[i] · scale : 0
//   backward_main:  dinp[i] (=|+=) keep(i) ? dout[i] · scale : 0
// u32 arithmetic wraps in WGSL, exactly like Math.imul / `>>> 0` in src/backend/dropout_hash.ts.
//
// Bindings:
//   0 p    uniform { n, key, threshold, scale }
//   1 src  [n]  read  (inp for the forward, dout for the backward; ignored when IN_PLACE: read via dst)
//   2 dst  [n]  `=` (out, or dinp), or `+=` with ACCUMULATE (backward only; an activation gradient is
//               normally assigned)
// Overrides: IN_PLACE (bool: src is the same buffer as dst, bound once as dst, since WebGPU forbids
// binding a buffer read-only and writable in one dispatch), ACCUMULATE (bool, backward_main).
// Dispatch: workgroups of 256 along x, 2D grid beyond 65535 workgroups: i = gid.x + gid.y · nwg.x · 256.
// Matches: CpuBackend.dropoutForward, CpuBackend.dropoutBackward (bit for bit: one float32 product each).

struct Params {
  n: u32,
  key: u32,
  threshold: u32,
  scale: f32,
}

override IN_PLACE: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// src[i] · scale where element i is kept, 0 where it is dropped.
fn dropped(i: u32) -> f32 {
  var x = 0.0;
  if (IN_PLACE) { x = dst[i]; } else { x = src[i]; }
  return select(0.0, x * p.scale, dropout_hash(p.key, i) >= p.threshold);
}

@compute @workgroup_size(256)
fn forward_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  dst[i] = dropped(i);
}

@compute @workgroup_size(256)
fn backward_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var v = dropped(i);
  if (ACCUMULATE) { v += dst[i]; }
  dst[i] = v;
}
