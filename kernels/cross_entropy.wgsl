// cross_entropy.wgsl — fused softmax + masked cross-entropy loss + its gradient, one workgroup per row.
//
// Uses from common.wgsl (appended when the kernel is loaded): workgroup_max, workgroup_sum.
//
// For each row n < N (N = B·T) of logits x = logits[n, :] with target y = targets[n]:
//   m = max_v x[v],  Z = Σ_v exp(x[v] − m)                       (softmax p[v] = exp(x[v] − m) / Z)
//   losses[n]     = −log p[y] = log Z + m − x[y]                  (0 when y < 0, e.g. −100 = ignored)
//   dlogits[n, v] = (p[v] − [v = y]) · scale                      (0 for the whole row when ignored)
// scale is usually 1 / (number of supervised rows), so that dlogits is the gradient of the mean loss.
// With CORRECT, the token accuracy as well:
//   correct[n]    = 1 when y is the row's argmax, the first index of its largest logit (torch.argmax), i.e.
//                   no v has x[v] > x[y] and no v < y has x[v] = x[y]; else 0 (0 when y < 0)
//
// Bindings:
//   0 p        uniform { N, V, scale }
//   1 logits   [N,V]     read (read_write so that dlogits may be written into it: DLOGITS = 2)
//   2 targets  [N] i32   read
//   3 losses   [N]       `=`
//   4 dlogits  [N,V]     `=` when DLOGITS = 1 (bind any other buffer otherwise)
//   5 correct  [N]       `=` when CORRECT (bind any buffer otherwise)
// Overrides: DLOGITS (u32): 0 = loss only, 1 = write dlogits to binding 4, 2 = write dlogits over logits
// (in place; WebGPU forbids binding one buffer twice when one binding is writable, so it is bound once);
// CORRECT (bool): write correct.
// Dispatch: one workgroup of 256 per row n = wg.x + wg.y · num_workgroups.x; invocation j handles
// v = j, j + 256, …; max and sum are tree reductions in shared memory (deterministic). In place is safe:
// x[y] is read (by invocation 0) and every reduction finishes before the first write.
// Matches: CpuBackend.crossEntropy.

struct Params {
  N: u32,
  V: u32,
  scale: f32,
}

override DLOGITS: u32 = 1u;
override CORRECT: bool = false;

const WG = 256u;
const NEG_BIG = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> correct: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

fn write_grad(i: u32, g: f32) {
  if (DLOGITS == 1u) { dlogits[i] = g; } else if (DLOGITS == 2u) { logits[i] = g; }
}

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let n = wg.x + wg.y * nwg.x;
  if (n >= p.N) { return; } // uniform across the workgroup
  let j = lid.x;
  let row = n * p.V;
  let y = targets[n];

  if (y < 0 || u32(y) >= p.V) { // ignored row (uniform: every invocation reads the same target)
    if (j == 0u) {
      losses[n] = 0.0;
      if (CORRECT) { correct[n] = 0.0; }
    }
    for (var v = j; v < p.V; v += WG) { write_grad(row + v, 0.0); }
    return;
  }

  var mx = NEG_BIG;
  for (var v = j; v < p.V; v += WG) { mx = max(mx, logits[row + v]); }
  mx = workgroup_max(j, mx);

  var z = 0.0;
  for (var v = j; v < p.V; v += WG) { z += exp(logits[row + v] - mx); }
  z = workgroup_sum(j, z); // this reduction's barriers also order the read of x[y] below before writes

  let xy = logits[row + u32(y)];
  if (j == 0u) { losses[n] = log(z) + mx - xy; }
  if (CORRECT) {
    // how many logits beat the target's (larger, or equal at a lower index): 0 iff y is the argmax
    var beat = 0.0;
    for (var v = j; v < p.V; v += WG) {
      let x = logits[row + v];
      if (x > xy || (x == xy && v < u32(y))) { beat += 1.0; }
    }
    beat = workgroup_sum(j, beat);
    if (j == 0u) { correct[n] = select(0.0, 1.0, beat == 0.0); }
  }
  workgroupBarrier();
  storageBarrier(); // in place: x[y] is read by every invocation before any invocation overwrites it

  if (DLOGITS != 0u) {
    let inv = 1.0 / z;
    for (var v = j; v < p.V; v += WG) {
      var g = exp(logits[row + v] - mx) * inv;
      if (v == u32(y)) { g -= 1.0; }
      write_grad(row + v, g * p.scale);
    }
  }
}
