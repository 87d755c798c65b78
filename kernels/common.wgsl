// common.wgsl — the helpers several kernels share, written once (as llm.c's dev/cuda/common.h).
//
// A kernel names the helpers it calls in a line of its header,
//   // Uses from common.wgsl (appended when the kernel is loaded): workgroup_sum.
// and the backend appends those functions (and the helpers they call) to the kernel's source when it loads
// the file (src/backend/webgpu/common.ts). Appended, not prepended: WGSL lets a module use a function
// declared below it, the kernel's own line numbers stay those of its file in compiler messages, and
// directives such as `enable f16;` stay first. Only the named helpers are added, because
// workgroup_max and workgroup_sum use declarations of the kernel (`WG`, `red`) that a kernel without them
// lacks.
//
// Requirements of the kernel:
//   workgroup_max, workgroup_sum   `const WG = …u;` (the workgroup size, a power of two) and
//                                  `var<workgroup> red: array<f32, WG>;` (their shared scratch); call them
//                                  from uniform control flow with j = local_invocation_index, every
//                                  invocation of the workgroup, as they contain barriers.
//   lowbias32, dropout_hash        nothing.
//   key_visible                    nothing.

// Chris Wellons' lowbias32: a bijection of u32 with very low bias (two multiply–xorshift rounds).
// Matches: lowbias32 in src/backend/dropout_hash.ts.
fn lowbias32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

// The dropout hash h(i) = lowbias32(lowbias32(i) ^ key) of element i: it is kept when h(i) ≥ threshold
// (threshold = ⌊p·2³²⌋; key = lowbias32(seed ^ 0x9E3779B9), from the host). No mask is stored: the
// backward recomputes it from the same key. Matches: dropoutHash in src/backend/dropout_hash.ts.
fn dropout_hash(key: u32, i: u32) -> u32 {
  return lowbias32(lowbias32(i) ^ key);
}

// Whether the training attention's mask lets a query whose mask value is `mt` see a key whose value is
// `ms` (causality aside): padding keys (0) are hidden from every query; under segment ids (packed rows:
// 1, 2, … per example) a real query sees only the keys of its own segment, and a padding query (0) every
// real key. A 0/1 mask is the plain key padding mask. Matches: keyHidden in src/backend/cpu/reference.ts.
fn key_visible(ms: i32, mt: i32) -> bool {
  return ms != 0 && (mt == 0 || ms == mt);
}

// Max of `v` over the workgroup, a tree in `red` (WG/2 pairs, then WG/4, …); every invocation gets it.
// Ends with a barrier, so `red` may be reused by the next reduction at once.
fn workgroup_max(j: u32, v: f32) -> f32 {
  red[j] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (j < s) { red[j] = max(red[j], red[j + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

// Sum of `v` over the workgroup, the same tree (so the order of the additions is fixed: deterministic).
fn workgroup_sum(j: u32, v: f32) -> f32 {
  red[j] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (j < s) { red[j] += red[j + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
