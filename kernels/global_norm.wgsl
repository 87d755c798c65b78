// global_norm.wgsl — the global L2 norm of many buffers (the gradient norm for clipping), two passes.
//
// Uses from common.wgsl (appended when the kernel is loaded): workgroup_sum.
//
// Computes  out[0] = √(Σ_buffers Σ_i x[i]²).
//   partial_main (once per buffer): block k of 4096 elements → partials[offset + k] = Σ_{i in block} x[i]²
//   final_main (once):              out[0] = √(Σ_k partials[k]) over count partials
// Every sum is a fixed tree or a fixed loop, so the norm is the same bits every run (deterministic).
//
// Bindings (shared by the entry points):
//   0 p         uniform { n, offset, count }  (n: this buffer's length; offset: its first partial;
//                                              count: total partials, for final_main)
//   1 inp       [n]        read (partial_main; final_main ignores it)
//   2 partials  [count]    workspace: `=` by partial_main, read by final_main
//   3 out       [1]        `=` by final_main
// Dispatch: partial_main one workgroup of 256 per block of 4096 elements (k = wg.x + wg.y · nwg.x);
// final_main a single workgroup of 256.
// Matches: CpuBackend.globalNorm (up to float32 summation order; the CPU sums in float64).

struct Params {
  n: u32,
  offset: u32,
  count: u32,
}

const WG = 256u;
const BLOCK = 4096u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>; // the scratch of the workgroup reductions (common.wgsl)

@compute @workgroup_size(256)
fn partial_main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let k = wg.x + wg.y * nwg.x;
  let start = k * BLOCK;
  if (start >= p.n) { return; } // uniform across the workgroup
  let j = lid.x;
  let end = min(start + BLOCK, p.n);
  var acc = 0.0;
  for (var i = start + j; i < end; i += WG) {
    let x = inp[i];
    acc += x * x;
  }
  let total = workgroup_sum(j, acc);
  if (j == 0u) { partials[p.offset + k] = total; }
}

@compute @workgroup_size(256)
fn final_main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let j = lid.x;
  var acc = 0.0;
  for (var i = j; i < p.count; i += WG) { acc += partials[i]; }
  let total = workgroup_sum(j, acc);
  if (j == 0u) { out[0] = sqrt(total); }
}
