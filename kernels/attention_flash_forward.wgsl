// attention_flash_forward.wgsl — attention_forward.wgsl's result without the T×T probabilities: an online
// softmax per query row, keeping only the row's log-sum-exp for the backward (FlashAttention's idea).
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash, key_visible.
//
// Same maths as attention_forward.wgsl (read that one first; its visible keys, segment ids included): for
// batch b, head h, query t,
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
// Dispatch: one workgroup of 64 per block of 64 consecutive queries of one (b, h): workgroup w (= wg.x +
// wg.y · num_workgroups.x, 2D when needed) takes bh = w / ⌈T/64⌉, queries t = 64·(w mod ⌈T/64⌉) + local id.
// Head size HS ≤ MAX_HS.
// Matches: CpuBackend.attentionForward's out (its saved probabilities are replaced by lse here), up to
// float32 rounding: the sums are in the same key order, the normalisation happens once at the end.
//
// Tiling: the 64 queries of a workgroup need the same keys (0 … its last query), so the workgroup stages
// them in shared memory TILE at a time — each key's k and v read from global memory once per workgroup
// instead of once per query — and every invocation then walks the tile for its own query (keys after it,
// or hidden by the mask, are skipped). Invocations past the end of T still help load and wait at the
// barriers (a barrier must be reached by the whole workgroup), but compute nothing.

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
const WG = 64u;
const TILE = 16u; // keys per shared tile: 2 · 16 · 128 floats = 16 KiB, WebGPU's guaranteed workgroup storage
const NEG_BIG = -3.0e38; // "−∞": no visible key

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> ks: array<f32, 2048>; // TILE keys × HS, key j at j·HS
var<workgroup> vs: array<f32, 2048>; // their values

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let T = p.T;
  let C = p.C;
  let blocks = (T + WG - 1u) / WG;
  let w = wg.x + wg.y * nwg.x;
  if (w >= p.B * p.NH * blocks) { return; } // a whole workgroup past the end (2D grid padding)
  let HS = C / p.NH;
  let bh = w / blocks;
  let t0 = (w % blocks) * WG;
  let t = t0 + lid;
  let live = t < T;
  let r = bh * T + t; // this invocation's query row (meaningful when live)
  let h = bh % p.NH;
  let b = bh / p.NH;
  let C3 = 3u * C;
  let scale = 1.0 / sqrt(f32(HS));

  var q: array<f32, MAX_HS>;
  var acc: array<f32, MAX_HS>;
  for (var d = 0u; d < HS; d++) { acc[d] = 0.0; }
  var mt = 0; // the query's mask value (its segment under packed rows)
  if (live) {
    if (HAS_MASK) { mt = mask[b * T + t]; }
    let qo = (b * T + t) * C3 + h * HS;
    for (var d = 0u; d < HS; d++) { q[d] = qkv[qo + d]; }
  }
  var m = NEG_BIG;
  var l = 0.0;
  let last = min(t0 + WG, T); // keys 0 … last − 1 are visible to some query of the block
  for (var s0 = 0u; s0 < last; s0 += TILE) {
    // ---- stage keys s0 … s0 + TILE − 1 (k and v) in shared memory, all 64 invocations together ----
    for (var i = lid; i < TILE * HS; i += WG) {
      let j = i / HS;
      let d = i % HS;
      let s = s0 + j;
      if (s < T) {
        let ko = (b * T + s) * C3 + C + h * HS;
        ks[i] = qkv[ko + d];
        vs[i] = qkv[ko + C + d];
      }
    }
    workgroupBarrier();
    // ---- this query against the staged keys, in order ----
    if (live) {
      for (var j = 0u; j < TILE; j++) {
        let s = s0 + j;
        if (s > t) { break; }
        if (HAS_MASK && !key_visible(mask[b * T + s], mt)) { continue; }
        var x = 0.0;
        for (var d = 0u; d < HS; d++) { x += q[d] * ks[j * HS + d]; }
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
        var wt = e;
        if (DROPOUT) {
          let a = r * T + s;
          wt = select(0.0, e * p.drop_scale, dropout_hash(p.drop_key, a) >= p.drop_threshold);
        }
        for (var d = 0u; d < HS; d++) { acc[d] += wt * vs[j * HS + d]; }
      }
    }
    workgroupBarrier(); // everyone is done with this tile before the next one overwrites it
  }
  if (!live) { return; }
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
