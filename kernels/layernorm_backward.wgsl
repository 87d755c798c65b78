// layernorm_backward.wgsl — gradient of layernorm_forward.wgsl, in two entry points.
//
// Uses from common.wgsl (appended when the kernel is loaded): workgroup_sum.
//
// With x̂ = (x − mean)·rstd (per row) and g = dout·weight (per element):
//   dinp[n, c]  = rstd·(g[c] − mean_c(g) − x̂[c]·mean_c(g·x̂))
//   dweight[c] += Σ_n dout[n, c]·x̂[n, c]
//   dbias[c]   += Σ_n dout[n, c]
// (Derivation: out = x̂·w + b, and x̂ depends on every x of its row through mean and rstd; the two means
// in dinp are the projections that remove those dependencies.)
//
// Bindings (shared by both entry points):
//   0 p        uniform { N, C }
//   1 dout     [N,C]  read
//   2 inp      [N,C]  read  (the forward's input)
//   3 weight   [C]    read
//   4 mean     [N]    read  (saved by the forward)
//   5 rstd     [N]    read  (saved by the forward)
//   6 dinp     [N,C]  `=`, or `+=` with ACCUMULATE (an activation gradient)
//   7 dweight  [C]    `+=` always (a parameter gradient)
//   8 dbias    [C]    `+=` always
// Overrides: ACCUMULATE (bool, for dinp).
// Entry points and dispatch:
//   dinp_main:    one workgroup of 128 per row n = wg.x + wg.y · num_workgroups.x; invocation j handles
//                 channels j, j + 128, …; the two row means are tree reductions in shared memory.
//   dparams_main: workgroups of 16×16, one per 16 channels (block w = wg.x + wg.y · num_workgroups.x):
//                 invocation (x, r) takes channel c = 16w + x and every 16th row n = r, r + 16, … in order,
//                 then the 16 partial sums of a channel are added in a fixed tree in shared memory
//                 (deterministic without float atomics; as sum_rows.wgsl, where the reason is spelled out).
// Matches: CpuBackend.layernormBackward.

struct Params {
  N: u32,
  C: u32,
}

override ACCUMULATE: bool = false;

const WG = 128u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(7) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbias: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

@compute @workgroup_size(128)
fn dinp_main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let n = wg.x + wg.y * nwg.x;
  if (n >= p.N) { return; } // uniform across the workgroup
  let j = lid.x;
  let row = n * p.C;
  let mu = mean[n];
  let rs = rstd[n];

  // mean(g) and mean(g·x̂) over the row
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = j; c < p.C; c += WG) {
    let g = dout[row + c] * weight[c];
    let xhat = (inp[row + c] - mu) * rs;
    sg += g;
    sgx += g * xhat;
  }
  let mean_g = workgroup_sum(j, sg) / f32(p.C);
  let mean_gx = workgroup_sum(j, sgx) / f32(p.C);

  for (var c = j; c < p.C; c += WG) {
    let g = dout[row + c] * weight[c];
    let xhat = (inp[row + c] - mu) * rs;
    var v = rs * (g - mean_g - xhat * mean_gx);
    if (ACCUMULATE) { v += dinp[row + c]; }
    dinp[row + c] = v;
  }
}

const COLS = 16u; // dparams_main: channels per workgroup
const LANES = 16u; // dparams_main: row lanes per channel

var<workgroup> part_w: array<f32, 256>; // part_w[r · COLS + x]: lane r's Σ dout·x̂ for channel x
var<workgroup> part_b: array<f32, 256>; // likewise Σ dout

@compute @workgroup_size(16, 16)
fn dparams_main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let x = lid.x;
  let r = lid.y;
  let c = (wg.x + wg.y * nwg.x) * COLS + x;
  var dw = 0.0;
  var db = 0.0;
  if (c < p.C) {
    for (var n = r; n < p.N; n += LANES) {
      let d = dout[n * p.C + c];
      dw += d * (inp[n * p.C + c] - mean[n]) * rstd[n];
      db += d;
    }
  }
  part_w[r * COLS + x] = dw;
  part_b[r * COLS + x] = db;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (r < s) {
      part_w[r * COLS + x] += part_w[(r + s) * COLS + x];
      part_b[r * COLS + x] += part_b[(r + s) * COLS + x];
    }
    workgroupBarrier();
  }
  if (r == 0u && c < p.C) {
    dweight[c] += part_w[x];
    dbias[c] += part_b[x];
  }
}
