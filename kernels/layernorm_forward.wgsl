// layernorm_forward.wgsl — layer normalisation over the channel axis, one workgroup per row.
//
// Uses from common.wgsl (appended when the kernel is loaded): workgroup_sum.
//
// For each row n < N (N = B·T) of x = inp[n, :]:
//   mean = Σ_c x[c] / C
//   rstd = 1 / √(Σ_c (x[c] − mean)² / C + eps)       (biased variance, as torch.nn.LayerNorm)
//   out[n, c] = (x[c] − mean) · rstd · weight[c] + bias[c]
//
// Bindings:
//   0 p       uniform { N, C, eps }
//   1 inp     [N,C]  read
//   2 weight  [C]    read
//   3 bias    [C]    read
//   4 out     [N,C]  `=`
//   5 mean    [N]    `=` (saved for the backward; bind any buffer and set SAVE_STATS = false to skip)
//   6 rstd    [N]    `=`
// Overrides: SAVE_STATS (bool).
// Dispatch: one workgroup of 128 invocations per row; the row index is wg.x + wg.y · num_workgroups.x
// (a 2D grid when N > 65535). Invocation j handles channels j, j + 128, j + 256, …
// Reductions are a fixed tree in shared memory (deterministic). The variance is computed in a second
// pass over the row from the mean (more accurate than E[x²] − mean²).
// Matches: CpuBackend.layernormForward.

struct Params {
  N: u32,
  C: u32,
  eps: f32,
}

override SAVE_STATS: bool = true;

const WG = 128u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

@compute @workgroup_size(128)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let n = wg.x + wg.y * nwg.x;
  if (n >= p.N) { return; } // uniform across the workgroup
  let j = lid.x;
  let row = n * p.C;

  var s = 0.0;
  for (var c = j; c < p.C; c += WG) { s += inp[row + c]; }
  let mean = workgroup_sum(j, s) / f32(p.C);

  var v = 0.0;
  for (var c = j; c < p.C; c += WG) {
    let d = inp[row + c] - mean;
    v += d * d;
  }
  let rstd = 1.0 / sqrt(workgroup_sum(j, v) / f32(p.C) + p.eps);

  for (var c = j; c < p.C; c += WG) {
    out[row + c] = (inp[row + c] - mean) * rstd * weight[c] + bias[c];
  }
  if (SAVE_STATS && j == 0u) {
    mean_out[n] = mean;
    rstd_out[n] = rstd;
  }
}
