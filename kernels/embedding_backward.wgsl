// embedding_backward.wgsl — gradient of embedding_forward.wgsl, deterministic without float atomics.
//
// Computes  dwte[ids[b,t], c] += dout[b, t, c]  and  dwpe[pos(b,t), c] += dout[b, t, c]
// for every (b, t), pos(b, t) = t or with HAS_POSITIONS positions[b, t] (packed rows), adding in position
// order n = b·T + t (the CPU loop's order, so the sums match it
// exactly). Many positions can hold the same token, so a plain "one invocation per position" would have
// several invocations adding into the same dwte row at once — a race (WGSL has no float atomics).
// Instead the positions holding the same token are chained into a linked list, on the GPU:
//   link_main:  for each position n: next[n] = the first m > n with ids[m] = ids[n] (or −1), and
//               head[n] = 1 when no m < n holds that id (n is the token's first occurrence)
//   dwte_main:  for each head n and channel c, one invocation walks the chain n → next[n] → … adding
//               dout[m, c] into dwte[ids[n], c]: each dwte element has exactly one writer
//   dwpe_main:  for each (t, c), one invocation adds dout[b, t, c] over b = 0…B−1 in order; with
//               HAS_POSITIONS the positions are chained as the ids are (link_main also links equal
//               positions) and one invocation per chain head n and channel c walks its chain into
//               dwpe[positions[n], c]
// link_main compares ids pairwise (N² integer compares, N = B·T): cheap next to the float work.
// A dwte larger than one storage binding is bound in windows of whole rows (see embedding_forward.wgsl):
// dwte_main then runs once per window, over the heads whose token is one of the window's rows row0 …
// row0 + rows − 1 (at dwte[(id − row0)·C + c]). Unsplit: row0 = 0, rows = V.
//
// Bindings (shared by the entry points):
//   0 p      uniform { B, T, C, V, row0, rows }
//   1 ids    [B,T] i32   read
//   2 dout   [B,T,C]     read
//   3 dwte   [rows,C]    `+=` (a parameter gradient; rows row0 … of the [V,C] gradient)
//   4 dwpe   [P,C]       `+=` (rows 0 … T−1, or those of the positions)
//   5 links  [2·B·T] i32 workspace: next[n] at n, head[n] at B·T + n; with HAS_POSITIONS [4·B·T], the
//            positions' chains after them (next at 2·B·T + n, head at 3·B·T + n)
//   6 positions [B,T] i32 read (ignored unless HAS_POSITIONS; bind any buffer)
// Overrides: HAS_POSITIONS (bool).
// Dispatch: link_main one invocation per position (workgroups of 64); dwte_main one invocation per
// (n, c) over B·T·C and dwpe_main one per (t, c) over T·C, with HAS_POSITIONS one per (n, c) over B·T·C
// (workgroups of 256, 2D grid beyond 65535). Ids outside 0…V−1 are skipped; positions are checked on the host.
// Matches: CpuBackend.embeddingBackward.

struct Params {
  B: u32,
  T: u32,
  C: u32,
  V: u32,
  row0: u32,
  rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dwte: array<f32>;
@group(0) @binding(4) var<storage, read_write> dwpe: array<f32>;
@group(0) @binding(5) var<storage, read_write> links: array<i32>;
@group(0) @binding(6) var<storage, read> positions: array<i32>;

override HAS_POSITIONS: bool = false;

@compute @workgroup_size(64)
fn link_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = gid.x + gid.y * nwg.x * 64u;
  let N = p.B * p.T;
  if (n >= N) { return; }
  let id = ids[n];
  var head = 1;
  for (var m = 0u; m < n; m++) {
    if (ids[m] == id) { head = 0; break; }
  }
  var next = -1;
  for (var m = n + 1u; m < N; m++) {
    if (ids[m] == id) { next = i32(m); break; }
  }
  links[n] = next;
  links[N + n] = head;
  if (!HAS_POSITIONS) { return; }
  let pos = positions[n];
  var phead = 1;
  for (var m = 0u; m < n; m++) {
    if (positions[m] == pos) { phead = 0; break; }
  }
  var pnext = -1;
  for (var m = n + 1u; m < N; m++) {
    if (positions[m] == pos) { pnext = i32(m); break; }
  }
  links[2u * N + n] = pnext;
  links[3u * N + n] = phead;
}

@compute @workgroup_size(256)
fn dwte_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  let N = p.B * p.T;
  if (i >= N * p.C) { return; }
  let c = i % p.C;
  let n = i / p.C;
  if (links[N + n] == 0) { return; } // not the first occurrence: the head's invocation covers it
  let id = ids[n];
  if (id < 0 || u32(id) >= p.V) { return; }
  if (u32(id) < p.row0 || u32(id) - p.row0 >= p.rows) { return; } // another window's row
  let o = (u32(id) - p.row0) * p.C + c;
  var acc = dwte[o];
  var m = i32(n);
  loop {
    acc += dout[u32(m) * p.C + c];
    m = links[u32(m)];
    if (m < 0) { break; }
  }
  dwte[o] = acc;
}

@compute @workgroup_size(256)
fn dwpe_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (HAS_POSITIONS) {
    // as dwte_main, over the chains of equal positions
    let N = p.B * p.T;
    if (i >= N * p.C) { return; }
    let c = i % p.C;
    let n = i / p.C;
    if (links[3u * N + n] == 0) { return; }
    let o = u32(positions[n]) * p.C + c;
    var acc = dwpe[o];
    var m = i32(n);
    loop {
      acc += dout[u32(m) * p.C + c];
      m = links[2u * N + u32(m)];
      if (m < 0) { break; }
    }
    dwpe[o] = acc;
    return;
  }
  if (i >= p.T * p.C) { return; }
  let c = i % p.C;
  let t = i / p.C;
  var acc = dwpe[i];
  for (var b = 0u; b < p.B; b++) {
    acc += dout[(b * p.T + t) * p.C + c];
  }
  dwpe[i] = acc;
}
