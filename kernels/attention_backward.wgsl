// attention_backward.wgsl — gradient of attention_forward.wgsl, in three entry points.
//
// Uses from common.wgsl (appended when the kernel is loaded): dropout_hash, workgroup_sum.
//
// Forward (per b, h): P = att = softmax(q·kᵀ·scale + mask), out = P·v, scale = 1/√HS.
// Backward, with dP[t,s] = dout_t · v_s and the softmax Jacobian:
//   dpre[t, s] = P[t,s] · (dP[t,s] − D[t]),   D[t] = Σ_s P[t,s] · dP[t,s]
//   dq_t = scale · Σ_s dpre[t, s] · k_s
//   dk_s = scale · Σ_t dpre[t, s] · q_t
//   dv_s = Σ_t P[t, s] · dout_t
// Keys that were not visible have P = 0, hence dpre = 0: the causal and padding masks need no special
// case here, and a fully masked row contributes nothing.
//
// Attention dropout (DROPOUT, the forward's mask recomputed): with M[a] = keep(a) ? drop_scale : 0 at the
// flat index a = ((b·NH + h)·T + t)·T + s, keep(a) = lowbias32(lowbias32(a) ^ drop_key) >= drop_threshold
// (as attention_forward.wgsl and dropout.wgsl), the forward used P̃ = P·M, so
//   dP[t,s] = (dout_t · v_s) · M[t,s]        (then dpre as above, with the undropped P)
//   dv_s    = Σ_t (P[t,s] · M[t,s]) · dout_t
// With DROPOUT false (p = 0) the override removes these branches: the undropped kernel.
//
// Bindings (shared by the entry points):
//   0 p        uniform { B, T, C, NH, drop_key, drop_threshold, drop_scale } (drop_* only with DROPOUT)
//   1 dout     [B,T,C]     read
//   2 qkv      [B,T,3C]    read
//   3 att      [B,NH,T,T]  read  (the probabilities saved by the forward)
//   4 dqkv     [B,T,3C]    `=` (an activation gradient; every element is written)
//   5 scratch  [B,NH,T,T]  dpre, written by dpre_main and read by the other two
// Overrides: DROPOUT (bool).
// Entry points and dispatch (run in this order):
//   dpre_main: one workgroup of 64 per query row r = (b·NH + h)·T + t (r = wg.x + wg.y · nwg.x); the
//              invocations split the keys s; D[t] is a tree reduction in shared memory.
//   dq_main:   one invocation per (b, t, c) of the q part (B·T·C, workgroups of 256, 2D grid), summing
//              over keys s = 0…t in order.
//   dkv_main:  one invocation per (b, s, c) of the k and v parts, summing over queries t = s…T−1 in order.
//              (With DROPOUT it recomputes keep(a) per term: HS invocations hash the same a, integer work
//              that is cheap next to the two loads per term.)
// No float atomics: every output element is summed by one invocation in a fixed order (deterministic).
// Matches: CpuBackend.attentionBackward.

struct Params {
  B: u32,
  T: u32,
  C: u32,
  NH: u32,
  drop_key: u32,
  drop_threshold: u32,
  drop_scale: f32,
}

override DROPOUT: bool = false;

const WG = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> att: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(5) var<storage, read_write> dpre: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

// The dropout factor M[a] of the probability at flat index a: drop_scale when kept, 0 when dropped.
fn drop_factor(a: u32) -> f32 {
  return select(0.0, p.drop_scale, dropout_hash(p.drop_key, a) >= p.drop_threshold);
}

@compute @workgroup_size(64)
fn dpre_main(
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
  let do_off = (b * p.T + t) * p.C + h * HS;
  let arow = r * p.T;

  // dP[t,s] = dout_t · v_s for s ≤ t (kept in dpre for now), and D = Σ_s P·dP
  var part = 0.0;
  for (var s = j; s <= t; s += WG) {
    let v_off = (b * p.T + s) * C3 + 2u * p.C + h * HS;
    var dot = 0.0;
    for (var d = 0u; d < HS; d++) { dot += dout[do_off + d] * qkv[v_off + d]; }
    if (DROPOUT) { dot *= drop_factor(arow + s); }
    dpre[arow + s] = dot;
    part += att[arow + s] * dot;
  }
  let D = workgroup_sum(j, part);

  // dpre = P·(dP − D); 0 for the future s > t. Each invocation rewrites only the entries it wrote.
  for (var s = j; s < p.T; s += WG) {
    if (s <= t) { dpre[arow + s] = att[arow + s] * (dpre[arow + s] - D); } else { dpre[arow + s] = 0.0; }
  }
}

@compute @workgroup_size(256)
fn dq_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.B * p.T * p.C) { return; }
  let c = i % p.C;
  let t = (i / p.C) % p.T;
  let b = i / (p.C * p.T);
  let HS = p.C / p.NH;
  let h = c / HS;
  let C3 = 3u * p.C;
  let scale = 1.0 / sqrt(f32(HS));
  let arow = ((b * p.NH + h) * p.T + t) * p.T;
  var acc = 0.0;
  for (var s = 0u; s <= t; s++) {
    acc += dpre[arow + s] * qkv[(b * p.T + s) * C3 + p.C + c];
  }
  dqkv[(b * p.T + t) * C3 + c] = acc * scale;
}

@compute @workgroup_size(256)
fn dkv_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.B * p.T * p.C) { return; }
  let c = i % p.C;
  let s = (i / p.C) % p.T;
  let b = i / (p.C * p.T);
  let HS = p.C / p.NH;
  let h = c / HS;
  let C3 = 3u * p.C;
  let scale = 1.0 / sqrt(f32(HS));
  let abase = (b * p.NH + h) * p.T * p.T;
  var dk = 0.0;
  var dv = 0.0;
  for (var t = s; t < p.T; t++) {
    let a = abase + t * p.T + s;
    dk += dpre[a] * qkv[(b * p.T + t) * C3 + c];
    if (DROPOUT) {
      dv += (att[a] * drop_factor(a)) * dout[(b * p.T + t) * p.C + c];
    } else {
      dv += att[a] * dout[(b * p.T + t) * p.C + c];
    }
  }
  let o = (b * p.T + s) * C3;
  dqkv[o + p.C + c] = dk * scale;
  dqkv[o + 2u * p.C + c] = dv;
}
