// attention_flash_forward.wgsl — attention_forward.wgsl's result without the T×T probabilities: an online
// softmax per query row, keeping only the row's log-sum-exp for the backward (FlashAttention's idea).
//
// Same maths as attention_forward.wgsl (read that one first): for batch b, head h, query t,
//   out[b, t, h·HS + d] = Σ_s P̃(t, s) · v_s[d],   P(t, s) = exp(x_s − lse_t) over the visible keys s,
//   x_s = q_t·k_s · scale,  lse_t = log Σ_visible exp(x_s),  P̃ = P, or with DROPOUT keep(a)·P·drop_scale
//   at a = ((b·NH + h)·T + t)·T + s (the same index, hash and threshold as attention_forward.wgsl).
// What is saved for the backward is stats[r] = lse_t (r = (b·NH + h)·T + t), B·NH·T floats instead of the
// B·NH·T² probabilities: 256× less at T = 256. A row with no visible key gets out = 0 and lse = −3e38.
//
// Online softmax. Walking the keys in order, the invocation keeps the running maximum m, the running sum
// l = Σ exp(x_s − m) and the running output acc = Σ w_s·v_s with w_s = exp(x_s − m) (dropped or not). When a
// new score exceeds m, both l and acc are rescaled by exp(m_old − m_new), so that they always refer to the
// current maximum; at the end out = acc / l and lse = m + log l. Every exp has a non-positive argument, so
// nothing overflows, exactly as in the two-pass softmax.
//
// Bindings:
//   0 p      uniform { B, T, C, NH, drop_key, drop_threshold, drop_scale } (drop_* read only with DROPOUT)
//   1 qkv    [B,T,3C]    read
//   2 mask   [B,T] i32   read (ignored unless HAS_MASK; bind any buffer)
//   3 stats  [2·B·NH·T]  `=` on the first half (lse); the backward writes the second half
//   4 out    [B,T,C]     `=`
// Overrides: HAS_MASK (bool), DROPOUT (bool).
// Dispatch: workgroups of 64; one invocation per query row r, r = global_id.x + global_id.y · 64 ·
// num_workgroups.x (2D grid when there are more than 65535 workgroups). Head size HS ≤ MAX_HS.
// Matches: CpuBackend.attentionForward's out (its saved probabilities are replaced by lse here), up to
// float32 rounding: the sums are in the same key order, the normalisation happens once at the end.
//
// Speed: this is the algorithm, not yet the tiling: keys and values are read from global memory by every
// query row (as attention_forward.wgsl does); staging them in shared memory per block of rows is the next
// step on a real GPU.

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
const NEG_BIG = -3.0e38; // "−∞": no visible key

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Chris Wellons' lowbias32 (the dropout hash, as in dropout.wgsl).
fn lowbias32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * 64u * nwg.x;
  let T = p.T;
  let C = p.C;
  if (r >= p.B * p.NH * T) { return; }
  let HS = C / p.NH;
  let t = r % T;
  let bh = r / T;
  let h = bh % p.NH;
  let b = bh / p.NH;
  let C3 = 3u * C;
  let scale = 1.0 / sqrt(f32(HS));
  let qo = (b * T + t) * C3 + h * HS;

  var q: array<f32, MAX_HS>;
  var acc: array<f32, MAX_HS>;
  for (var d = 0u; d < HS; d++) {
    q[d] = qkv[qo + d];
    acc[d] = 0.0;
  }
  var m = NEG_BIG;
  var l = 0.0;
  for (var s = 0u; s <= t; s++) {
    if (HAS_MASK && mask[b * T + s] == 0) { continue; }
    let ko = (b * T + s) * C3 + C + h * HS;
    var x = 0.0;
    for (var d = 0u; d < HS; d++) { x += q[d] * qkv[ko + d]; }
    x *= scale;
    if (x > m) {
      // a new maximum: rescale what was summed so far (the first key: l = 0 and acc = 0, nothing to do)
      let c = exp(m - x);
      l *= c;
      for (var d = 0u; d < HS; d++) { acc[d] *= c; }
      m = x;
    }
    let e = exp(x - m);
    l += e;
    var w = e;
    if (DROPOUT) {
      let a = r * T + s;
      w = select(0.0, e * p.drop_scale, lowbias32(lowbias32(a) ^ p.drop_key) >= p.drop_threshold);
    }
    let vo = ko + C;
    for (var d = 0u; d < HS; d++) { acc[d] += w * qkv[vo + d]; }
  }
  let oo = (b * T + t) * C + h * HS;
  if (l == 0.0) {
    for (var d = 0u; d < HS; d++) { out[oo + d] = 0.0; }
    stats[r] = NEG_BIG;
    return;
  }
  let inv = 1.0 / l;
  for (var d = 0u; d < HS; d++) { out[oo + d] = acc[d] * inv; }
  stats[r] = m + log(l);
}
