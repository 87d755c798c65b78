// scale.wgsl — multiply a buffer by a scalar in place.
//
// Computes  buf[i] *= s  for i < n (e.g. gradient scaling).
//
// Bindings:
//   0 p    uniform { n, s }
//   1 buf  [n]  read_write (`*=`)
// Dispatch: workgroups of 256 along x, 2D grid beyond 65535 workgroups: i = gid.x + gid.y · nwg.x · 256.
// Matches: CpuBackend.scale.

struct Params {
  n: u32,
  s: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  buf[i] = buf[i] * p.s;
}
