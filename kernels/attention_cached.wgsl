// attention_cached.wgsl — inference attention with a KV cache (one or a few new tokens at a time).
//
// Uses from common.wgsl (appended when the kernel is loaded): workgroup_max, workgroup_sum.
//
// New tokens tn < Tn sit at positions pos0 + tn. qkv [B,Tn,3C] holds their q, k, v (as in
// attention_forward.wgsl). First their keys and values are stored in the caches:
//   kcache[b, h, pos0 + tn, d] = k_tn[d],   vcache[b, h, pos0 + tn, d] = v_tn[d]
// then each new query attends to cache positions s ≤ pos0 + tn (and mask[b, s] ≠ 0 when given):
//   P[s] = softmax_s(q·kcache[b,h,s]·scale),  out[b, tn, h·HS + d] = Σ_s P[s]·vcache[b, h, s, d]
// A query with no visible position gets out = 0.
//
// Bindings (shared by the entry points):
//   0 p        uniform { B, Tn, C, NH, pos0, Tmax }
//   1 qkv      [B,Tn,3C]      read
//   2 mask     [B,Tmax] i32   read (ignored unless HAS_MASK; bind any buffer)
//   3 kcache   [B,NH,Tmax,HS] positions pos0 … pos0+Tn−1 written (`=`) by store_main
//   4 vcache   [B,NH,Tmax,HS] likewise
//   5 out      [B,Tn,C]       `=`
//   6 scratch  [B,NH,Tn,Tmax] scores / probabilities (workspace)
// Overrides: HAS_MASK (bool).
// Entry points and dispatch (run in this order):
//   store_main:  one invocation per (b, tn, c) (B·Tn·C, workgroups of 256, 2D grid).
//   attend_main: one workgroup of 64 per query row r = (b·NH + h)·Tn + tn (r = wg.x + wg.y · nwg.x);
//                the same three-pass softmax as attention_forward.wgsl, over cache positions.
// Matches: CpuBackend.attentionCached.

struct Params {
  B: u32,
  Tn: u32,
  C: u32,
  NH: u32,
  pos0: u32,
  Tmax: u32,
}

override HAS_MASK: bool = false;

const WG = 64u;
const NEG_BIG = -3.0e38; // stands for −∞

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<f32>;
@group(0) @binding(4) var<storage, read_write> vcache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> scratch: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

fn visible(b: u32, tq: u32, s: u32) -> bool {
  if (s > tq) { return false; }
  if (HAS_MASK) { return mask[b * p.Tmax + s] != 0; }
  return true;
}

@compute @workgroup_size(256)
fn store_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.B * p.Tn * p.C) { return; }
  let c = i % p.C;
  let tn = (i / p.C) % p.Tn;
  let b = i / (p.C * p.Tn);
  let HS = p.C / p.NH;
  let h = c / HS;
  let d = c % HS;
  let src = (b * p.Tn + tn) * 3u * p.C;
  let dst = ((b * p.NH + h) * p.Tmax + p.pos0 + tn) * HS + d;
  kcache[dst] = qkv[src + p.C + c];
  vcache[dst] = qkv[src + 2u * p.C + c];
}

@compute @workgroup_size(64)
fn attend_main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let r = wg.x + wg.y * nwg.x;
  if (r >= p.B * p.NH * p.Tn) { return; } // uniform across the workgroup
  let j = lid.x;
  let tn = r % p.Tn;
  let h = (r / p.Tn) % p.NH;
  let b = r / (p.Tn * p.NH);
  let tq = p.pos0 + tn; // the query's position
  let HS = p.C / p.NH;
  let scale = 1.0 / sqrt(f32(HS));
  let q_off = (b * p.Tn + tn) * 3u * p.C + h * HS;
  let cache = (b * p.NH + h) * p.Tmax; // row index of position 0 in the caches
  let srow = r * p.Tmax;

  var mx = NEG_BIG;
  for (var s = j; s <= tq; s += WG) {
    if (visible(b, tq, s)) {
      let k_off = (cache + s) * HS;
      var dot = 0.0;
      for (var d = 0u; d < HS; d++) { dot += qkv[q_off + d] * kcache[k_off + d]; }
      let score = dot * scale;
      scratch[srow + s] = score;
      mx = max(mx, score);
    }
  }
  mx = workgroup_max(j, mx);

  var sum = 0.0;
  for (var s = j; s <= tq; s += WG) {
    if (visible(b, tq, s)) {
      let e = exp(scratch[srow + s] - mx);
      scratch[srow + s] = e;
      sum += e;
    }
  }
  sum = workgroup_sum(j, sum);
  var inv = 0.0;
  if (sum > 0.0) { inv = 1.0 / sum; }

  for (var s = j; s <= tq; s += WG) {
    if (visible(b, tq, s)) { scratch[srow + s] = scratch[srow + s] * inv; } else { scratch[srow + s] = 0.0; }
  }
  storageBarrier();
  workgroupBarrier();

  let o_off = (b * p.Tn + tn) * p.C + h * HS;
  for (var d = j; d < HS; d += WG) {
    var acc = 0.0;
    for (var s = 0u; s <= tq; s++) {
      acc += scratch[srow + s] * vcache[(cache + s) * HS + d];
    }
    out[o_off + d] = acc;
  }
}
