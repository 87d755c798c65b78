// embedding_forward.wgsl — token + position embeddings.
//
// Computes  out[b, t, c] = wte[ids[b, t], c] + wpe[pos(b, t), c]  for b < B, t < T, c < C, where
//   pos(b, t) = pos0 + t, or with HAS_POSITIONS  positions[b, t]  (HF's position_ids: batched generation
//   pads prompts on the left, so each row's positions start at 0 at its own first token).
// An id outside 0…V−1 gives a row of 0 from wte (the backend validates ids on the host where it can);
// positions are validated on the host.
//
// A wte larger than one storage binding (GPT-2's 50257 × 768 floats are 154 MB; WebGPU's default binding
// limit is 128 MiB) is bound in windows of whole rows, one dispatch per window (src/backend/webgpu/split.ts):
// the window holds wte rows row0 … row0 + rows − 1, row row0 + r at wte[r·C + c]. The dispatch with
// first = 1 writes every output, out = (the token's row if it is in the window, else 0) + wpe; each later
// one adds the rows of the tokens in its window, out += wte. 0 + wpe + tok equals tok + wpe exactly, so the
// result is the unsplit one bit for bit. Unsplit: row0 = 0, rows = V, first = 1.
//
// Bindings:
//   0 p    uniform { B, T, C, V, pos0, row0, rows, first }
//   1 ids  [B,T] i32  read
//   2 wte  [rows,C]   read (rows row0 … of the [V,C] token embedding)
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
  row0: u32,
  rows: u32,
  first: u32,
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
  // the token's row in this dispatch's window of wte, if it is there
  let inWindow = id >= 0 && u32(id) < p.V && u32(id) >= p.row0 && u32(id) - p.row0 < p.rows;
  var tok = 0.0;
  if (inWindow) { tok = wte[(u32(id) - p.row0) * p.C + c]; }
  if (p.first == 0u) {
    if (inWindow) { out[i] += tok; }
    return;
  }
  var pos = p.pos0 + t;
  if (HAS_POSITIONS) { pos = u32(positions[bt]); }
  out[i] = tok + wpe[pos * p.C + c];
}
