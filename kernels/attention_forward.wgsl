// attention_forward.wgsl — causal multi-head softmax attention with a key padding mask (GPT-2).
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash, key_visible, workgroup_max, workgroup_sum.
//
// For batch b, head h, query t (HS = C / NH channels per head, scale = 1/√HS):
//   q_t = qkv[b, t, h·HS … h·HS+HS−1]            k_s = qkv[b, s, C + h·HS …]      v_s = qkv[b, s, 2C + h·HS …]
//   visible(t, s) = s ≤ t and mask[b, s] ≠ 0   (no mask: s ≤ t)
//                   and, when mask[b, t] ≠ 0, mask[b, s] = mask[b, t]   (segment ids of packed rows:
//                   block-diagonal causal attention; key_visible)
//   att[b, h, t, s] = softmax_s(q_t·k_s · scale) over visible s, and 0 where not visible
//   out[b, t, h·HS + d] = Σ_s att[b, h, t, s] · v_s[d]
// A query row with no visible key (e.g. a padded position at the start) gets att = 0 and out = 0.
//
// Attention dropout (DROPOUT; HF's attn_dropout in training mode): att keeps the undropped P, and the
// output uses the dropped probabilities  P̃[a] = keep(a) ? P[a] · drop_scale : 0  at the flat index
// a = ((b·NH + h)·T + t)·T + s of att, with keep(a) = lowbias32(lowbias32(a) ^ drop_key) >= drop_threshold,
// the mask of dropout.wgsl and src/backend/dropout_hash.ts. With DROPOUT false (p = 0) the pipeline is the
// undropped kernel: the override removes the branch at pipeline creation.
//
// Bindings:
//   0 p     uniform { B, T, C, NH, drop_key, drop_threshold, drop_scale } (drop_* read only with DROPOUT)
//   1 qkv   [B,T,3C]   read
//   2 mask  [B,T] i32  read (ignored unless HAS_MASK; bind any buffer)
//   3 att   [B,NH,T,T] `=` (every element of the row is written: probabilities, 0 where not visible)
//   4 out   [B,T,C]    `=`
// Overrides: HAS_MASK (bool), DROPOUT (bool).
// Dispatch: one workgroup of 64 per query row r = (b·NH + h)·T + t, r = wg.x + wg.y · num_workgroups.x
// (2D grid when B·NH·T > 65535). Invocations split the keys s (j, j+64, …) for the scores and the
// channels d for the output; the max and the sum are tree reductions in shared memory (deterministic).
// The row of `att` doubles as scratch for the scores (written then read back by the same invocation;
// storageBarrier makes the probabilities visible to the whole workgroup before the weighted sum).
// With DROPOUT, step 4 goes through keys in chunks of 64: invocation j hashes key s0 + j once and puts
// its dropped probability in shared memory, then every invocation sums the chunk for its channels, still
// in the order s = 0, 1, …, t (one hash per probability, not one per probability and channel).
// Matches: CpuBackend.attentionForward.

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

const WG = 64u;
const NEG_BIG = -3.0e38; // below any real score; stands for −∞ (WGSL has no infinity literal)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;
@group(0) @binding(3) var<storage, read_write> att: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)
var<workgroup> dropped: array<f32, WG>; // DROPOUT: one chunk of dropped probabilities

fn visible(b: u32, t: u32, s: u32) -> bool {
  if (s > t) { return false; }
  if (HAS_MASK) { return key_visible(mask[b * p.T + s], mask[b * p.T + t]); }
  return true;
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let r = wg.x + wg.y * nwg.x;
  if (r >= p.B * p.NH * p.T) { return; } // uniform across the workgroup
  let j = lid.x;
  let t = r % p.T;
  let h = (r / p.T) % p.NH;
  let b = r / (p.T * p.NH);
  let HS = p.C / p.NH;
  let C3 = 3u * p.C;
  let scale = 1.0 / sqrt(f32(HS));
  let q_off = (b * p.T + t) * C3 + h * HS;
  let arow = r * p.T;

  // 1. scores q·k·scale for the visible keys, and their max
  var mx = NEG_BIG;
  for (var s = j; s <= t; s += WG) {
    if (visible(b, t, s)) {
      let k_off = (b * p.T + s) * C3 + p.C + h * HS;
      var dot = 0.0;
      for (var d = 0u; d < HS; d++) { dot += qkv[q_off + d] * qkv[k_off + d]; }
      let score = dot * scale;
      att[arow + s] = score;
      mx = max(mx, score);
    }
  }
  mx = workgroup_max(j, mx);

  // 2. exponentials and their sum (subtracting the max keeps exp ≤ 1)
  var sum = 0.0;
  for (var s = j; s <= t; s += WG) {
    if (visible(b, t, s)) {
      let e = exp(att[arow + s] - mx);
      att[arow + s] = e;
      sum += e;
    }
  }
  sum = workgroup_sum(j, sum);
  var inv = 0.0;
  if (sum > 0.0) { inv = 1.0 / sum; } // no visible key: everything stays 0

  // 3. normalise; 0 for keys that are not visible (including the future s > t)
  for (var s = j; s < p.T; s += WG) {
    if (visible(b, t, s)) { att[arow + s] = att[arow + s] * inv; } else { att[arow + s] = 0.0; }
  }
  storageBarrier();
  workgroupBarrier();

  let o_off = (b * p.T + t) * p.C + h * HS;
  if (DROPOUT) {
    // 4'. out = Σ_s P̃ · v, keys in chunks of WG whose dropped probabilities are shared (loops uniform)
    for (var d0 = 0u; d0 < HS; d0 += WG) {
      let d = d0 + j;
      var acc = 0.0;
      for (var s0 = 0u; s0 <= t; s0 += WG) {
        let s = s0 + j;
        var w = 0.0;
        if (s <= t) {
          let a = arow + s;
          w = select(0.0, att[a] * p.drop_scale, dropout_hash(p.drop_key, a) >= p.drop_threshold);
        }
        dropped[j] = w;
        workgroupBarrier();
        if (d < HS) {
          let n = min(WG, t + 1u - s0);
          for (var u = 0u; u < n; u++) {
            acc += dropped[u] * qkv[(b * p.T + s0 + u) * C3 + 2u * p.C + h * HS + d];
          }
        }
        workgroupBarrier();
      }
      if (d < HS) { out[o_off + d] = acc; }
    }
    return;
  }

  // 4. out = Σ_s att · v, each invocation owning channels d = j, j + 64, …
  for (var d = j; d < HS; d += WG) {
    var acc = 0.0;
    for (var s = 0u; s <= t; s++) {
      let v_off = (b * p.T + s) * C3 + 2u * p.C + h * HS;
      acc += att[arow + s] * qkv[v_off + d];
    }
    out[o_off + d] = acc;
  }
}
