// copy_block.wgsl — copy a block of rows × cols from one matrix into another (a gather or a scatter).
//
// Computes  dst[dst_0 + r·dst_ld + c] (=|+=) src[src_0 + r·src_ld + c]   for r < rows, c < cols.
// ld (BLAS's "leading dimension") is the distance between two rows of a matrix, x_0 the block's first
// element in its binding. The backend uses it where a matrix is larger than one binding
// (src/backend/webgpu/split.ts): a matrix product over the tied LM head runs in blocks of the vocabulary,
// and a block of columns of the logits (rows of ld = V floats) is gathered into a buffer of its own before
// its product, or a product's block of columns is scattered back into its place in the logits.
//
// Bindings:
//   0 p    uniform { rows, cols, src_0, src_ld, dst_0, dst_ld }
//   1 src  read
//   2 dst  `=`, or `+=` with ACCUMULATE
// Overrides: ACCUMULATE (bool).
// Dispatch: one invocation per element i = r·cols + c of the block, workgroups of 256 along x; the index
// is gid.x + gid.y · 256 · num_workgroups.x (a 2D grid beyond 65535 workgroups).
// Matches: a plain copy (`Backend.copy` row by row).

struct Params {
  rows: u32,
  cols: u32,
  src_0: u32,
  src_ld: u32,
  dst_0: u32,
  dst_ld: u32,
}

override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.rows * p.cols) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  let v = src[p.src_0 + r * p.src_ld + c];
  let o = p.dst_0 + r * p.dst_ld + c;
  if (ACCUMULATE) {
    dst[o] += v;
  } else {
    dst[o] = v;
  }
}
