// attention_softmax.wgsl — the softmax half of attention computed as matrix products ("matmul" attention):
// matmul_batched.wgsl computes the scores S = Q·Kᵀ·scale and the output P̃·V, this file turns scores into
// probabilities and, in the backward, probability gradients into score gradients.
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash, key_visible, workgroup_max, workgroup_sum.
//
// The maths is attention_forward.wgsl's and attention_backward.wgsl's (read those first). For the row
// r = (b·NH + h)·T + t of the [B,NH,T,T] buffers, visible(t, s) = s ≤ t and key_visible(mask[b, s], mask[b, t])
// (mask[b, s] ≠ 0, and in the same segment as the query under the segment ids of packed rows):
//   forward_main:   att[r, s] = exp(S[r, s] − max) / Σ exp(…) over the visible s, 0 elsewhere (in place:
//                   the scores come in, the probabilities P go out; a row with no visible key is all 0)
//   backward_main:  with dP̃[r, s] = dout_t · v_s from matmul_batched.wgsl (in `grad`, read only for s ≤ t)
//                   and the dropout factor M(t, s) (keep·drop_scale or 0; 1 without DROPOUT),
//                     dP = dP̃ · M,   D = Σ_s P·dP,   grad[r, s] = P · (dP − D)   (dS; 0 for s > t)
//                   in place, so that matmul_batched.wgsl can form dQ = dS·K and dK = dSᵀ·Q from it.
// Entries above the diagonal (s > t) of the incoming buffers may hold anything (matmul_batched.wgsl's CAUSAL
// 1 does not write them); both entry points write 0 there without reading them.
//
// Bindings (shared by the entry points):
//   0 p     uniform { B, T, NH, drop_key, drop_threshold, drop_scale } (drop_* only with DROPOUT)
//   1 mask  [B,T] i32      read (forward, ignored unless HAS_MASK; bind any buffer)
//   2 att   [B,NH,T,T]     forward: scores in, P out; backward: P, read
//   3 grad  [B,NH,T,T]     backward: dP̃ in, dS out (forward: unused, bind any buffer)
// Overrides: HAS_MASK (bool, forward), DROPOUT (bool, backward).
// Dispatch: one workgroup of 64 per row r = wg.x + wg.y · num_workgroups.x (B·NH·T rows, 2D grid when
// above 65535); invocations split the keys s (j, j + 64, …); max and sums are tree reductions in shared
// memory (deterministic).
// Matches: CpuBackend.attentionForward / attentionBackward (with the matmuls of matmul_batched.wgsl).

struct Params {
  B: u32,
  T: u32,
  NH: u32,
  drop_key: u32,
  drop_threshold: u32,
  drop_scale: f32,
}

override HAS_MASK: bool = false;
override DROPOUT: bool = false;

const WG = 64u;
const NEG_BIG = -3.0e38; // below any real score; stands for −∞

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mask: array<i32>;
@group(0) @binding(2) var<storage, read_write> att: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

@compute @workgroup_size(64)
fn forward_main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let r = wg.x + wg.y * nwg.x;
  if (r >= p.B * p.NH * p.T) { return; } // uniform across the workgroup
  let j = lid.x;
  let t = r % p.T;
  let b = r / (p.T * p.NH);
  let row = r * p.T;

  // 1. the max of the visible scores
  var mt = 0;
  if (HAS_MASK) { mt = mask[b * p.T + t]; }
  var mx = NEG_BIG;
  for (var s = j; s <= t; s += WG) {
    if (!HAS_MASK || key_visible(mask[b * p.T + s], mt)) { mx = max(mx, att[row + s]); }
  }
  mx = workgroup_max(j, mx);

  // 2. exponentials (≤ 1: the max is subtracted) and their sum; 0 for the keys that are not visible
  var sum = 0.0;
  for (var s = j; s < p.T; s += WG) {
    var e = 0.0;
    if (s <= t && (!HAS_MASK || key_visible(mask[b * p.T + s], mt))) { e = exp(att[row + s] - mx); }
    att[row + s] = e;
    sum += e;
  }
  sum = workgroup_sum(j, sum);

  // 3. normalise (each invocation rescales only the entries it wrote); a row with nothing visible stays 0
  var inv = 0.0;
  if (sum > 0.0) { inv = 1.0 / sum; }
  for (var s = j; s <= t; s += WG) { att[row + s] = att[row + s] * inv; }
}

@compute @workgroup_size(64)
fn backward_main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let r = wg.x + wg.y * nwg.x;
  if (r >= p.B * p.NH * p.T) { return; }
  let j = lid.x;
  let t = r % p.T;
  let row = r * p.T;

  // dP = dP̃ · M for s ≤ t (kept in grad for now), and D = Σ_s P·dP
  var part = 0.0;
  for (var s = j; s <= t; s += WG) {
    var dp = grad[row + s];
    if (DROPOUT) {
      let a = row + s;
      dp = select(0.0, dp * p.drop_scale, dropout_hash(p.drop_key, a) >= p.drop_threshold);
    }
    grad[row + s] = dp;
    part += att[row + s] * dp;
  }
  let D = workgroup_sum(j, part);

  // dS = P · (dP − D); 0 for the future s > t (each invocation rewrites only the entries it wrote)
  for (var s = j; s < p.T; s += WG) {
    if (s <= t) { grad[row + s] = att[row + s] * (grad[row + s] - D); } else { grad[row + s] = 0.0; }
  }
}
