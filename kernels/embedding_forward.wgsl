// embedding_forward.wgsl — token + position embeddings.
//
// Computes  out[b, t, c] = wte[ids[b, t], c] + wpe[pos(b, t), c]  for b < B, t < T, c < C, where
//   pos(b, t) = pos0 + t, or with HAS_POSITIONS  positions[b, t]  (HF's position_ids: batched generation
//   pads prompts on the left, so each row's positions start at 0 at its own first token).
// An id outside 0…V−1 gives a row of 0 from wte (the backend validates ids on the host where it can);
// positions are validated on the host.
//
// Bindings:
//   0 p    uniform { B, T, C, V, pos0 }
//   1 ids  [B,T] i32  read
//   2 wte  [V,C]      read
//   3 wpe  [P,C]      read (P ≥ pos0 + T positions)
//   4 out  [B,T,C]    `=`
//   5 positions [B,T] i32  read (ignored unless HAS_POSITIONS; bind any buffer)
// Overrides: HAS_POSITIONS (bool).
// Dispatch: one invocation per output element i = (b·T + t)·C + c; workgroups of 256, 2D grid beyond
// 65535 workgroups (i = gid.x + gid.y · nwg.x · 256).
// Matches: CpuBackend.embeddingForward.

struct Params {
  B: u32,
  T: u32,
  C: u32,
  V: u32,
  pos0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> wte: array<f32>;
@group(0) @binding(3) var<storage, read> wpe: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> positions: array<i32>;

override HAS_POSITIONS: bool = false;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.B * p.T * p.C) { return; }
  let c = i % p.C;
  let bt = i / p.C;
  let t = bt % p.T;
  let id = ids[bt];
  var tok = 0.0;
  if (id >= 0 && u32(id) < p.V) { tok = wte[u32(id) * p.C + c]; }
  var pos = p.pos0 + t;
  if (HAS_POSITIONS) { pos = u32(positions[bt]); }
  out[i] = tok + wpe[pos * p.C + c];
}
