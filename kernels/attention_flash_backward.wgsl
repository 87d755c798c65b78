// attention_flash_backward.wgsl — gradient of attention_flash_forward.wgsl: the probabilities are
// recomputed from q, k and the saved log-sum-exp instead of being read back from a T×T buffer.
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash, key_visible.
//
// The maths of attention_backward.wgsl (read that one first), with P(t, s) = exp(q_t·k_s·scale − lse_t)
// for visible keys (s ≤ t, key_visible(mask[b, s], mask[b, t]): attention_forward.wgsl's) and 0 otherwise, and M = keep(a)·drop_scale with DROPOUT (the
// forward's mask, same index a = ((b·NH + h)·T + t)·T + s), M = 1 without:
//   dP(t, s) = (dout_t · v_s) · M(t, s)
//   D_t      = Σ_s P(t, s) · dP(t, s)               (= dout_t · out_t, computed here from the keys)
//   dq_t     = scale · Σ_s P(t, s) · (dP(t, s) − D_t) · k_s
//   dk_s     = scale · Σ_t P(t, s) · (dP(t, s) − D_t) · q_t
//   dv_s     = Σ_t P(t, s) · M(t, s) · dout_t
//
// Bindings (shared by the entry points):
//   0 p      uniform { B, T, C, NH, drop_key, drop_threshold, drop_scale } (drop_* only with DROPOUT)
//   1 dout   [B,T,C]     read
//   2 qkv    [B,T,3C]    read
//   3 mask   [B,T] i32   read (ignored unless HAS_MASK; bind any buffer)
//   4 stats  [2·B·NH·T]  lse in the first half (from the forward), read; D_t into the second half
//   5 dqkv   [B,T,3C]    `=` (every element is written)
// Overrides: HAS_MASK (bool), DROPOUT (bool).
// Entry points and dispatch (run in this order), workgroups of 64, r = global_id.x + global_id.y · 64 · nwg.x:
//   dq_main:  one invocation per query row r = (b·NH + h)·T + t: a first pass over the keys for D_t (kept in
//             stats for dkv_main), a second for dq_t; writes the q part of dqkv.
//   dkv_main: one invocation per key row r = (b·NH + h)·T + s, summing over the queries t = s…T−1 in order;
//             writes the k and v parts.
// Keys and queries are read from global memory per row: staging them in shared memory, as the forward does,
// measured slower on lavapipe (the whole backward at B 4, T 256, C 768, NH 12: 1.2–1.4 s staged vs 0.70–0.87 s
// not); whether it pays on a GPU is open.
// No float atomics: every output element is summed by one invocation in a fixed order (deterministic).
// Matches: CpuBackend.attentionBackward, up to float32 rounding (P is recomputed rather than stored).

struct Params {
  B: u32,
  T: u32,
  C: u32,
  NH: u32,
  drop_key: u32,
  drop_threshold: u32,
  drop_scale: f32,
}

override HAS_MASK: bool = false;
override DROPOUT: bool = false;

const MAX_HS = 128u;
const NEG_BIG = -3.0e38; // the forward's lse of a row with no visible key

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<i32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;

// M(t, s) at flat index a: the forward's dropout factor (1 without DROPOUT).
fn drop_factor(a: u32) -> f32 {
  if (!DROPOUT) { return 1.0; }
  return select(0.0, p.drop_scale, dropout_hash(p.drop_key, a) >= p.drop_threshold);
}

// Key s visible to query t (s ≤ t taken care of by the callers).
fn visible(b: u32, t: u32, s: u32) -> bool {
  return !HAS_MASK || key_visible(mask[b * p.T + s], mask[b * p.T + t]);
}

// For query t (q_t in *q, dout_t in *g, its lse) and the key whose k starts at qkv[ko] (v at ko + C), at flat
// index a: (P(t, s), dP(t, s)) = (exp(q_t·k_s·scale − lse), (dout_t·v_s)·M(t, s)). Both passes of dq_main.
fn p_and_dp(
  q: ptr<function, array<f32, MAX_HS>>,
  g: ptr<function, array<f32, MAX_HS>>,
  ko: u32,
  lse: f32,
  a: u32,
) -> vec2<f32> {
  let HS = p.C / p.NH;
  let scale = 1.0 / sqrt(f32(HS));
  var x = 0.0;
  var gv = 0.0;
  for (var d = 0u; d < HS; d++) {
    x += (*q)[d] * qkv[ko + d];
    gv += (*g)[d] * qkv[ko + p.C + d];
  }
  return vec2(exp(x * scale - lse), gv * drop_factor(a));
}

@compute @workgroup_size(64)
fn dq_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * 64u * nwg.x;
  let T = p.T;
  let C = p.C;
  let BNT = p.B * p.NH * T;
  if (r >= BNT) { return; }
  let HS = C / p.NH;
  let t = r % T;
  let bh = r / T;
  let h = bh % p.NH;
  let b = bh / p.NH;
  let C3 = 3u * C;
  let scale = 1.0 / sqrt(f32(HS));
  let qo = (b * T + t) * C3 + h * HS;
  let go = (b * T + t) * C + h * HS;
  let lse = stats[r];

  var q: array<f32, MAX_HS>;
  var g: array<f32, MAX_HS>; // dout_t
  var dq: array<f32, MAX_HS>;
  for (var d = 0u; d < HS; d++) {
    q[d] = qkv[qo + d];
    g[d] = dout[go + d];
    dq[d] = 0.0;
  }
  var D = 0.0;
  if (lse > NEG_BIG) {
    // pass 1: D_t = Σ_s P·dP
    for (var s = 0u; s <= t; s++) {
      if (!visible(b, t, s)) { continue; }
      let pd = p_and_dp(&q, &g, (b * T + s) * C3 + C + h * HS, lse, r * T + s);
      D += pd.x * pd.y;
    }
    // pass 2: dq_t = scale · Σ_s P·(dP − D)·k_s
    for (var s = 0u; s <= t; s++) {
      if (!visible(b, t, s)) { continue; }
      let ko = (b * T + s) * C3 + C + h * HS;
      let pd = p_and_dp(&q, &g, ko, lse, r * T + s);
      let dpre = pd.x * (pd.y - D);
      for (var d = 0u; d < HS; d++) { dq[d] += dpre * qkv[ko + d]; }
    }
  }
  for (var d = 0u; d < HS; d++) { dqkv[qo + d] = dq[d] * scale; }
  stats[BNT + r] = D;
}

@compute @workgroup_size(64)
fn dkv_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * 64u * nwg.x;
  let T = p.T;
  let C = p.C;
  let BNT = p.B * p.NH * T;
  if (r >= BNT) { return; }
  let HS = C / p.NH;
  let s = r % T;
  let bh = r / T;
  let h = bh % p.NH;
  let b = bh / p.NH;
  let C3 = 3u * C;
  let scale = 1.0 / sqrt(f32(HS));
  let ko = (b * T + s) * C3 + C + h * HS;

  var k: array<f32, MAX_HS>;
  var v: array<f32, MAX_HS>;
  var dk: array<f32, MAX_HS>;
  var dv: array<f32, MAX_HS>;
  for (var d = 0u; d < HS; d++) {
    k[d] = qkv[ko + d];
    v[d] = qkv[ko + C + d];
    dk[d] = 0.0;
    dv[d] = 0.0;
  }
  if (!HAS_MASK || mask[b * T + s] != 0) {
    for (var t = s; t < T; t++) {
      if (!visible(b, t, s)) { continue; } // another segment's query (packed rows)
      let rt = bh * T + t; // the query row
      let qo = (b * T + t) * C3 + h * HS;
      let go = (b * T + t) * C + h * HS;
      var x = 0.0;
      var gv = 0.0;
      for (var d = 0u; d < HS; d++) {
        x += qkv[qo + d] * k[d];
        gv += dout[go + d] * v[d];
      }
      let P = exp(x * scale - stats[rt]); // row t sees key s, so its lse is finite
      let M = drop_factor(rt * T + s);
      let dpre = P * (gv * M - stats[BNT + rt]);
      for (var d = 0u; d < HS; d++) {
        dk[d] += dpre * qkv[qo + d];
        dv[d] += P * M * dout[go + d];
      }
    }
  }
  for (var d = 0u; d < HS; d++) {
    dqkv[ko + d] = dk[d] * scale;
    dqkv[ko + C + d] = dv[d];
  }
}
