// add.wgsl — elementwise addition, the residual connection of a transformer block.
//
// Computes  out[i] (=|+=) a[i] + b[i]  for i < n.
// Used for x + attn(ln1(x)) and x + mlp(ln2(x)) in the forward, and to add one gradient into another
// (out = a, the in-place `out += b`) in the backward.
//
// Bindings:
//   0 p    uniform { n }
//   1 a    [n]  read  (ignored when A_IS_OUT: a is the same buffer as out, read through `out`)
//   2 b    [n]  read  (ignored when B_IS_OUT)
//   3 out  [n]  `=`, or `+=` with ACCUMULATE
// Overrides: A_IS_OUT, B_IS_OUT, ACCUMULATE (bool). WebGPU forbids binding one buffer both read-only and
// writable in one dispatch, so the backend binds an aliased input only once, as `out`.
// Dispatch: workgroups of 256 along x; a 2D grid (x ≤ 65535) when n needs more than 65535 workgroups:
// i = gid.x + gid.y · (num_workgroups.x · 256).
// Matches: CpuBackend.add.

struct Params {
  n: u32,
}

override A_IS_OUT: bool = false;
override B_IS_OUT: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let o = out[i];
  var x = 0.0;
  if (A_IS_OUT) { x = o; } else { x = a[i]; }
  var y = 0.0;
  if (B_IS_OUT) { y = o; } else { y = b[i]; }
  var v = x + y;
  if (ACCUMULATE) { v = o + v; }
  out[i] = v;
}
