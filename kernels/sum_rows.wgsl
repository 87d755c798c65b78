// sum_rows.wgsl — column sums: the bias gradient of a linear layer.
//
// Computes  out[j] (=|+=) Σ_i inp[i, j]  over the M rows, for j < N (dbias[OC] = Σ over B·T rows of
// dout[B·T, OC]).
//
// Bindings:
//   0 p    uniform { M, N }
//   1 inp  [M,N]  read
//   2 out  [N]    `=`, or `+=` with ACCUMULATE (a parameter gradient: normally `+=`)
// Overrides: ACCUMULATE (bool).
// Dispatch: workgroups of 16×16 = 256 invocations, one workgroup per 16 columns (block w = wg.x + wg.y ·
// num_workgroups.x, 2D when needed): invocation (x, r) takes column j = 16w + x and every 16th row
// i = r, r + 16, r + 32, … in order; the 16 partial sums of a column are then added in a fixed tree in shared
// memory (deterministic), and added to out[j] with ACCUMULATE.
//
// Why not one invocation per column walking all M rows (the obvious loop)? The bias of attn.c_proj has 768
// columns: that would be 768 invocations — a dozen warps on a GPU with thousands of lanes — each waiting on
// 1024 loads one after another. Sixteen row lanes give 16× the parallelism and 1/16 of the serial loads,
// and a warp still reads 16 neighbouring floats of each of two rows (whole 32-byte memory sectors).
// Matches: CpuBackend.sumRows, up to float32 summation order.

struct Params {
  M: u32,
  N: u32,
}

override ACCUMULATE: bool = false;

const COLS = 16u; // columns per workgroup
const LANES = 16u; // row lanes per column

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, 256>; // part[r · COLS + x]: lane r's sum for column x

@compute @workgroup_size(16, 16)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let x = lid.x;
  let r = lid.y;
  let j = (wg.x + wg.y * nwg.x) * COLS + x;
  // 1. each lane sums its rows (columns past N sum nothing, but still reach the barriers below)
  var acc = 0.0;
  if (j < p.N) {
    for (var i = r; i < p.M; i += LANES) { acc += inp[i * p.N + j]; }
  }
  part[r * COLS + x] = acc;
  workgroupBarrier();
  // 2. the lanes of each column, pairwise in a fixed tree: lanes r and r + s for s = 8, 4, 2, 1
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (r < s) { part[r * COLS + x] += part[(r + s) * COLS + x]; }
    workgroupBarrier();
  }
  if (r == 0u && j < p.N) {
    var total = part[x];
    if (ACCUMULATE) { total += out[j]; }
    out[j] = total;
  }
}
