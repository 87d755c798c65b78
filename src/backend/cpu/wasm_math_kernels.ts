/**
 * The kernels of wasm_math.ts (which streams arrays through them): elementwise maths in WebAssembly SIMD for
 * the CPU backend's fast path, assembled by hand like wasm_matmul.ts, four floats per instruction:
 * - GELU (HF's `gelu_new`, the tanh form) forward and backward: the most expensive elementwise op (37.7 M
 *   elements a step at GPT-2's shape, ≈ 1 s in plain TypeScript, where `Math.tanh` dominates); `fwdD` also
 *   saves the derivative, and `mul` is then the whole backward;
 * - the attention softmax, forward and backward, a whole block of a head per call (causal, right padding,
 *   an optional KV-cache offset); and exp(x − shift) over a row, for the softmax under a general mask;
 * - the dropout mask (`drop`: dropout_hash.ts's integer hash in i32x4 lanes, bit for bit the loops');
 * - layernorm forward and backward, a row at a time (C a multiple of 4);
 * - one AdamW step in float32 (102 M parameters a step at GPT-2's shape; ≈ 6.7 ns each in TypeScript).
 * Every kernel is tested against the plain loops of reference.ts or a float64 formula (tests/cpu_fast_test.ts).
 *
 * Maths, per lane (x the input, S = √(2/π), c = 0.044715, u = S·(x + c·x³)):
 *   1 + tanh(u) = 2·sigmoid(2u), so gelu(x) = 0.5·x·(1 + tanh u) = x / (1 + E) with E = exp(−2u), −2u
 *   clamped to [−80, 80] (E stays a finite normal float32; past ±80 the answer is x or 0 to float32 anyway);
 *   this form has no cancellation (0.5·(1 + tanh u) loses digits where tanh u is near −1).
 *   backward: gelu'(x) = q + x·E·q²·2S·(1 + 3c·x²) with q = 1/(1 + E) (sigmoid(2u) and its derivative
 *   sigmoid·(1 − sigmoid) = E·q²), computed as ((E·q)·q)·x so that nothing overflows, x clamped to ±1e4 in
 *   the polynomial (E·q² is 0 to float32 long before).
 * exp(y), y in [−87, 88]: n = round(y·log₂e) by adding and subtracting 1.5·2²³ (float32 addition rounds to
 * an integer there), r = y − n·ln2 (ln2 split in a high part exact in float32 and a low part, so that
 * n·ln2_hi has no rounding error), e^r by its Taylor series to degree 7 (|r| ≤ ln2/2: the first term left
 * out is < 6e−9, below float32's resolution), times 2ⁿ: the bits of 1.5·2²³ + n hold n in their low bits, so
 * (bits + 127) << 23 is the float32 2ⁿ (n + 127 in [1, 254]).
 * Accuracy against the float64 loops of reference.ts: a few float32 roundings, ≈ 2e−7 relative (tests in
 * tests/cpu_fast_test.ts).
 *
 * Every constant lives in a local set once per call (`FnBuilder`): built inline, each `v128.const` costs
 * instructions on every pass of a loop. Min and max are `pmin`/`pmax` (one instruction each; the NaN-exact
 * `min`/`max` take several on x86).
 * @module
 */

import { F32, FnBuilder, I32, simd, sleb, uleb, V128, wasmModule } from "./wasm_asm.ts";

// opcodes
const BLOCK = 0x02, LOOP = 0x03, IF = 0x04, END = 0x0b, BR = 0x0c, BR_IF = 0x0d, SELECT = 0x1b, VOID = 0x40;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const F32_LOAD = 0x2a, F32_STORE = 0x38, I32_CONST = 0x41;
const I32_LT_S = 0x48, I32_GE_S = 0x4e, I32_ADD = 0x6a, I32_SUB = 0x6b, I32_MUL = 0x6c, I32_SHL = 0x74;
const I32_SHR_U = 0x76;
const F32_SQRT = 0x91, F32_ADD = 0x92, F32_SUB = 0x93, F32_MUL = 0x94, F32_DIV = 0x95, F32_MAX = 0x97;
const F32_CONVERT_I32_S = 0xb2;
const MEMORY_FILL = [0xfc, 0x0b, 0x00];
const V128_LOAD = 0x00, V128_STORE = 0x0b, V128_CONST = 0x0c, V128_AND = 0x4e, V128_XOR = 0x51;
const I32X4_SPLAT = 0x11, I32X4_GE_U = 0x40, I32X4_SHR_U = 0xad, I32X4_MUL = 0xb5;
const F32X4_SPLAT = 0x13, F32X4_EXTRACT_LANE = 0x1f, I32X4_SHL = 0xab, I32X4_ADD = 0xae;
const F32X4_ADD = 0xe4, F32X4_SUB = 0xe5, F32X4_MUL = 0xe6, F32X4_DIV = 0xe7, F32X4_PMIN = 0xea, F32X4_PMAX = 0xeb;
const F32X4_SQRT = 0xe3;

const S = Math.sqrt(2 / Math.PI), C = 0.044715;
const LN2_HI = 0.693359375; // 0x3f318000: 9 significant bits, so n·LN2_HI is exact for |n| < 2¹⁵
const LN2_LO = Math.LN2 - LN2_HI;
const ROUND = 12582912; // 1.5·2²³: y + ROUND rounds y to an integer, kept in the low mantissa bits

const get = (l: number) => [LOCAL_GET, ...uleb(l)], set = (l: number) => [LOCAL_SET, ...uleb(l)];
const tee = (l: number) => [LOCAL_TEE, ...uleb(l)];
const op = (o: number) => simd(o);
const i32c = (n: number) => [I32_CONST, ...sleb(n)];
const vload = (addr: number[], offset = 0) => [...addr, ...op(V128_LOAD), 2, ...uleb(offset)];
const f32load = (addr: number[]) => [...addr, F32_LOAD, 2, 0];

/** `while (i < end) { body; i += step }` over i32 locals. */
function whileBelow(i: number, end: number, step: number, body: readonly number[]): number[] {
  // deno-fmt-ignore
  return [
    BLOCK, VOID, LOOP, VOID,
    ...get(i), ...get(end), I32_GE_S, BR_IF, 1,
    ...body,
    ...get(i), ...i32c(step), I32_ADD, ...set(i),
    BR, 0, END, END,
  ];
}

/**
 * A loop that runs `body` `count` times (`count` ≥ 0 counts down) with the byte offset in local `off`: 0,
 * then + `stride` (default one vec4) each pass.
 */
function vecLoop(count: number, off: number, body: readonly number[], stride = 16): number[] {
  // deno-fmt-ignore
  return [
    ...get(count), IF, VOID,
    ...i32c(0), ...set(off),
    LOOP, VOID,
    ...body,
    ...get(off), ...i32c(stride), I32_ADD, ...set(off),
    ...get(count), ...i32c(1), I32_SUB, ...tee(count), BR_IF, 0,
    END, END,
  ];
}

/** The sum of a v128's four float32 lanes, (l0 + l1) + (l2 + l3), from local `v`. */
function laneSum(v: number): number[] {
  const lane = (k: number) => [...get(v), ...op(F32X4_EXTRACT_LANE), k];
  return [...lane(0), ...lane(1), F32_ADD, ...lane(2), ...lane(3), F32_ADD, F32_ADD];
}

/** Scratch locals of {@link expOf}. */
interface ExpScratch {
  t: number;
  n: number;
  r: number;
}

function expScratch(f: FnBuilder): ExpScratch {
  return { t: f.local(V128), n: f.local(V128), r: f.local(V128) };
}

/** Code that leaves exp(y) on the stack for y in local `y` (each lane in [−87, 88]; `y` is kept). */
function expOf(f: FnBuilder, y: number, s: ExpScratch): number[] {
  const c: number[] = [];
  // t = y·log₂e + 1.5·2²³ (rounded to an integer); n = t − 1.5·2²³
  c.push(...get(y), ...f.f32x4(Math.LOG2E), ...op(F32X4_MUL), ...f.f32x4(ROUND), ...op(F32X4_ADD), ...tee(s.t));
  c.push(...f.f32x4(ROUND), ...op(F32X4_SUB), ...set(s.n));
  // r = y − n·LN2_HI − n·LN2_LO
  c.push(...get(y), ...get(s.n), ...f.f32x4(LN2_HI), ...op(F32X4_MUL), ...op(F32X4_SUB));
  c.push(...get(s.n), ...f.f32x4(LN2_LO), ...op(F32X4_MUL), ...op(F32X4_SUB), ...set(s.r));
  // e^r = 1 + r(1 + r(1/2 + r(1/6 + r(1/24 + r(1/120 + r(1/720 + r/5040))))))  (Horner)
  c.push(...f.f32x4(1 / 5040));
  for (const k of [720, 120, 24, 6, 2, 1, 1]) {
    c.push(...get(s.r), ...op(F32X4_MUL), ...f.f32x4(1 / k), ...op(F32X4_ADD));
  }
  // · 2ⁿ, whose bits are (bits(t) + 127) << 23
  c.push(...get(s.t), ...f.i32x4(127), ...op(I32X4_ADD), ...i32c(23), ...op(I32X4_SHL), ...op(F32X4_MUL));
  return c;
}

/** Code that leaves E = exp(−2u) on the stack, u = S·(x + c·x³), −2u clamped to [−80, 80]; uses `z`. */
function expMinus2u(f: FnBuilder, x: number, z: number, s: ExpScratch): number[] {
  const c: number[] = [];
  c.push(...get(x), ...get(x), ...op(F32X4_MUL), ...f.f32x4(C), ...op(F32X4_MUL), ...f.f32x4(1), ...op(F32X4_ADD));
  c.push(...get(x), ...op(F32X4_MUL), ...f.f32x4(-2 * S), ...op(F32X4_MUL));
  c.push(...f.f32x4(80), ...op(F32X4_PMIN), ...f.f32x4(-80), ...op(F32X4_PMAX), ...set(z));
  return [...c, ...expOf(f, z, s)];
}

/**
 * Vec4s per pass of the GELU loops: two independent chains of ≈ 40 dependent instructions each, side by side,
 * so that the core overlaps their latencies (≈ 1.5× faster than one at a time).
 */
export const UNROLL = 2;

/**
 * Code that leaves gelu'(x) = q + ((E·q)·q)·x·2S·(1 + 3c·x²), q = 1/(1 + E), on the stack, with E in local `e`
 * (from {@link expMinus2u}); it sets `q`, and clamps `x` to ±1e4 in place (x·x² stays finite; E·q² is 0 to
 * float32 long before). `bwd` and `fwdD` share it, so the saved derivative is bit for bit the recomputed one.
 */
function geluDerivativeOf(f: FnBuilder, x: number, e: number, q: number): number[] {
  const c: number[] = [];
  c.push(...f.f32x4(1), ...get(e), ...f.f32x4(1), ...op(F32X4_ADD), ...op(F32X4_DIV), ...set(q));
  c.push(...get(x), ...f.f32x4(1e4), ...op(F32X4_PMIN), ...f.f32x4(-1e4), ...op(F32X4_PMAX), ...set(x));
  // deno-fmt-ignore
  c.push(
    ...get(q),
    ...get(e), ...get(q), ...op(F32X4_MUL), ...get(q), ...op(F32X4_MUL), ...get(x), ...op(F32X4_MUL),
    ...get(x), ...get(x), ...op(F32X4_MUL), ...f.f32x4(3 * C), ...op(F32X4_MUL), ...f.f32x4(1), ...op(F32X4_ADD),
    ...op(F32X4_MUL), ...f.f32x4(2 * S), ...op(F32X4_MUL),
    ...op(F32X4_ADD),
  );
  return c;
}

/** fwd(inp, out, n): out[i] = gelu(inp[i]) for n groups of UNROLL vec4s (byte addresses). */
function forwardBody(): number[] {
  const INP = 0, OUT = 1, N = 2;
  const f = new FnBuilder([I32, I32, I32]);
  const off = f.local(I32);
  const at = (base: number) => [...get(base), ...get(off), I32_ADD];
  const body: number[] = [];
  for (let j = 0; j < UNROLL; j++) {
    const x = f.local(V128), z = f.local(V128), s = expScratch(f);
    body.push(...vload(at(INP), 16 * j), ...set(x));
    body.push(...at(OUT)); // address for the store
    // x / (1 + E)
    body.push(...get(x), ...expMinus2u(f, x, z, s), ...f.f32x4(1), ...op(F32X4_ADD), ...op(F32X4_DIV));
    body.push(...op(V128_STORE), 2, ...uleb(16 * j));
  }
  return f.body(vecLoop(N, off, body, 16 * UNROLL));
}

/** bwd(inp, dout, dinp, n, acc): dinp[i] (=|+=) gelu'(inp[i])·dout[i] for n groups of UNROLL vec4s. */
function backwardBody(): number[] {
  const INP = 0, DOUT = 1, DINP = 2, N = 3, ACC = 4;
  const f = new FnBuilder([I32, I32, I32, I32, I32]);
  const off = f.local(I32);
  const at = (base: number) => [...get(base), ...get(off), I32_ADD];
  const body: number[] = [];
  for (let j = 0; j < UNROLL; j++) {
    const o = 16 * j, x = f.local(V128), z = f.local(V128), e = f.local(V128), q = f.local(V128);
    const g = f.local(V128), s = expScratch(f);
    body.push(...vload(at(INP), o), ...set(x));
    body.push(...expMinus2u(f, x, z, s), ...set(e));
    // g = gelu'(x)·dout
    body.push(...geluDerivativeOf(f, x, e, q), ...vload(at(DOUT), o), ...op(F32X4_MUL), ...set(g));
    // acc ? dinp + g : g (`select` evaluates both; without acc the load reads a stale chunk, unused)
    body.push(...at(DINP)); // address for the store
    body.push(...vload(at(DINP), o), ...get(g), ...op(F32X4_ADD), ...get(g), ...get(ACC), SELECT);
    body.push(...op(V128_STORE), 2, ...uleb(o));
  }
  return f.body(vecLoop(N, off, body, 16 * UNROLL));
}

/**
 * fwdD(inp, out, deriv, n4): out[i] = gelu(inp[i]) as `fwd`, and deriv[i] = gelu'(inp[i]) as `bwd` computes
 * it (q + ((E·q)·q)·x·2S·(1 + 3c·x²), q = 1/(1 + E)), from the same exp: the backward is then one product.
 */
function forwardDerivBody(): number[] {
  const INP = 0, OUT = 1, DERIV = 2, N = 3;
  const f = new FnBuilder([I32, I32, I32, I32]);
  const off = f.local(I32), x = f.local(V128), z = f.local(V128), e = f.local(V128), q = f.local(V128);
  const s = expScratch(f);
  const at = (base: number) => [...get(base), ...get(off), I32_ADD];
  const body: number[] = [];
  body.push(...vload(at(INP)), ...set(x));
  body.push(...expMinus2u(f, x, z, s), ...set(e));
  // out = x / (1 + E), exactly as fwd
  body.push(
    ...at(OUT),
    ...get(x),
    ...get(e),
    ...f.f32x4(1),
    ...op(F32X4_ADD),
    ...op(F32X4_DIV),
    ...op(V128_STORE),
    2,
    0,
  );
  // deriv, exactly as bwd computes it before its product with dout
  body.push(...at(DERIV), ...geluDerivativeOf(f, x, e, q), ...op(V128_STORE), 2, 0);
  return f.body(vecLoop(N, off, body));
}

/** mul(a, b, dst, n4, acc): dst[i] (=|+= with acc) a[i]·b[i] (GELU's backward from the saved derivative). */
function mulBody(): number[] {
  const Ab = 0, Bb = 1, DST = 2, N = 3, ACC = 4;
  const f = new FnBuilder([I32, I32, I32, I32, I32]);
  const off = f.local(I32), g = f.local(V128);
  const at = (base: number) => [...get(base), ...get(off), I32_ADD];
  const body: number[] = [];
  body.push(...vload(at(Ab)), ...vload(at(Bb)), ...op(F32X4_MUL), ...set(g));
  body.push(...at(DST), ...vload(at(DST)), ...get(g), ...op(F32X4_ADD), ...get(g), ...get(ACC), SELECT);
  body.push(...op(V128_STORE), 2, 0);
  return f.body(vecLoop(N, off, body));
}

/** exp(inp, out, n4, shift): out[i] = exp(inp[i] − shift) for n4 vec4s, the argument clamped to [−87, 88]. */
function expBody(): number[] {
  const INP = 0, OUT = 1, N = 2, SHIFT = 3;
  const f = new FnBuilder([I32, I32, I32, F32]);
  const off = f.local(I32), sh = f.local(V128), y = f.local(V128), s = expScratch(f);
  const at = (base: number) => [...get(base), ...get(off), I32_ADD];
  const body: number[] = [];
  body.push(...at(OUT)); // address for the store
  body.push(...vload(at(INP)), ...get(sh), ...op(F32X4_SUB));
  body.push(...f.f32x4(88), ...op(F32X4_PMIN), ...f.f32x4(-87), ...op(F32X4_PMAX), ...set(y));
  body.push(...expOf(f, y, s), ...op(V128_STORE), 2, 0);
  return f.body([...get(SHIFT), ...op(F32X4_SPLAT), ...set(sh), ...vecLoop(N, off, body)]);
}

/**
 * softmax(p, rows, stride, off, len): the causal softmax of a block of `rows` rows of scores, `stride` floats
 * apart, at byte address p, in place: row t over its first n = min(t + 1 + off, len) entries (the keys it
 * sees: causal — `off` earlier positions are in a KV cache — and right padding after len), zeros to the end
 * of the row (n = 0: all zeros). Training: rows = stride = T, off = 0. Per row: the max, then exp(x − max) summed in four float32 lanes, then times 1/sum;
 * whole vec4s first, the last n mod 4 entries one at a time (rows are not 16-byte aligned when T is not a
 * multiple of 4, which v128 loads allow; nothing is read or written past the row).
 */
function softmaxBody(): number[] {
  const P = 0, ROWS = 1, STRIDE = 2, OFF = 3, LEN = 4;
  const f = new FnBuilder([I32, I32, I32, I32, I32]);
  const t = f.local(I32), n = f.local(I32), row = f.local(I32), a = f.local(I32), v4end = f.local(I32);
  const nend = f.local(I32), rowEnd = f.local(I32);
  const m = f.local(F32), sum = f.local(F32), inv = f.local(F32);
  const mv = f.local(V128), sv = f.local(V128), y = f.local(V128), e = f.local(V128), s = expScratch(f);
  const row4 = [...get(STRIDE), ...i32c(4), I32_MUL];
  const c: number[] = [];
  c.push(...i32c(0), ...set(t), ...get(P), ...set(row));
  const perRow: number[] = [];
  // n = min(t + 1 + off, len); the row's ends: whole vec4s, n, stride
  const t1 = [...get(t), ...i32c(1), I32_ADD, ...get(OFF), I32_ADD];
  perRow.push(...t1, ...get(LEN), ...t1, ...get(LEN), I32_LT_S);
  perRow.push(SELECT, ...set(n));
  perRow.push(...get(row), ...get(n), ...i32c(2), I32_SHR_U, ...i32c(4), I32_SHL, I32_ADD, ...set(v4end));
  perRow.push(...get(row), ...get(n), ...i32c(2), I32_SHL, I32_ADD, ...set(nend));
  perRow.push(...get(row), ...row4, I32_ADD, ...set(rowEnd));
  const visible: number[] = [];
  // max
  visible.push(...f.f32x4(-Infinity), ...set(mv), ...get(row), ...set(a));
  visible.push(...whileBelow(a, v4end, 16, [...get(mv), ...vload(get(a)), ...op(F32X4_PMAX), ...set(mv)]));
  const lane = (k: number) => [...get(mv), ...op(F32X4_EXTRACT_LANE), k];
  visible.push(...lane(0), ...lane(1), F32_MAX, ...lane(2), ...lane(3), F32_MAX, F32_MAX, ...set(m));
  visible.push(...whileBelow(a, nend, 4, [...get(m), ...f32load(get(a)), F32_MAX, ...set(m)]));
  // e = exp(x − max), stored, summed
  visible.push(...get(m), ...op(F32X4_SPLAT), ...set(mv)); // mv: max in every lane now
  visible.push(...f.f32x4(0), ...set(sv), ...get(row), ...set(a));
  // deno-fmt-ignore
  const shifted = (load: number[]) => [
    ...load, ...get(mv), ...op(F32X4_SUB), ...f.f32x4(-87), ...op(F32X4_PMAX), ...set(y),
  ];
  // deno-fmt-ignore
  visible.push(...whileBelow(a, v4end, 16, [
    ...shifted(vload(get(a))), ...expOf(f, y, s), ...set(e),
    ...get(a), ...get(e), ...op(V128_STORE), 2, 0,
    ...get(sv), ...get(e), ...op(F32X4_ADD), ...set(sv),
  ]));
  visible.push(...laneSum(sv), ...set(sum));
  // deno-fmt-ignore
  visible.push(...whileBelow(a, nend, 4, [
    ...shifted([...f32load(get(a)), ...op(F32X4_SPLAT)]), ...expOf(f, y, s), ...op(F32X4_EXTRACT_LANE), 0,
    ...set(m), ...get(a), ...get(m), F32_STORE, 2, 0, // m: this exp (the max is in mv)
    ...get(sum), ...get(m), F32_ADD, ...set(sum),
  ]));
  // · 1/sum
  visible.push(...f32c(1), ...get(sum), F32_DIV, ...tee(inv), ...op(F32X4_SPLAT), ...set(sv), ...get(row), ...set(a));
  visible.push(
    ...whileBelow(a, v4end, 16, [...get(a), ...vload(get(a)), ...get(sv), ...op(F32X4_MUL), ...op(V128_STORE), 2, 0]),
  );
  visible.push(...whileBelow(a, nend, 4, [...get(a), ...f32load(get(a)), ...get(inv), F32_MUL, F32_STORE, 2, 0]));
  perRow.push(...get(n), IF, VOID, ...visible, END);
  // zeros from n to the row's end
  perRow.push(...get(nend), ...i32c(0), ...get(rowEnd), ...get(nend), I32_SUB, ...MEMORY_FILL);
  perRow.push(...get(rowEnd), ...set(row));
  // t counts rows: whileBelow adds 1
  c.push(...whileBelow(t, ROWS, 1, perRow));
  return f.body(c);
}

/**
 * softmaxBwd(p, d, T): the causal softmax's backward in place in the T×T block d (dP in, dS out) with P
 * the T×T block p: row t over s ≤ t:  d = p·(d − Σ_{s≤t} p·d);  zeros after. Keys the forward hid have
 * p = 0, so d = 0 there.
 */
function softmaxBackwardBody(): number[] {
  const P = 0, D = 1, T = 2;
  const f = new FnBuilder([I32, I32, I32]);
  const t = f.local(I32), k = f.local(I32), v4end = f.local(I32), nend = f.local(I32), rowEnd = f.local(I32);
  const prow = f.local(I32), drow = f.local(I32), dot = f.local(F32), acc = f.local(V128), ds = f.local(V128);
  const pAt = [...get(prow), ...get(k), I32_ADD], dAt = [...get(drow), ...get(k), I32_ADD];
  const c: number[] = [];
  c.push(...i32c(0), ...set(t), ...get(P), ...set(prow), ...get(D), ...set(drow));
  const perRow: number[] = [];
  // n = t + 1: byte ends of the whole vec4s, of n, of the row
  perRow.push(...get(t), ...i32c(1), I32_ADD, ...i32c(2), I32_SHR_U, ...i32c(4), I32_SHL, ...set(v4end));
  perRow.push(...get(t), ...i32c(1), I32_ADD, ...i32c(2), I32_SHL, ...set(nend));
  perRow.push(...get(T), ...i32c(2), I32_SHL, ...set(rowEnd));
  // Σ p·d
  perRow.push(...f.f32x4(0), ...set(acc), ...i32c(0), ...set(k));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, v4end, 16, [
    ...get(acc), ...vload(pAt), ...vload(dAt), ...op(F32X4_MUL), ...op(F32X4_ADD), ...set(acc),
  ]));
  perRow.push(...laneSum(acc), ...set(dot));
  perRow.push(
    ...whileBelow(k, nend, 4, [...get(dot), ...f32load(pAt), ...f32load(dAt), F32_MUL, F32_ADD, ...set(dot)]),
  );
  // d = p·(d − Σ)
  perRow.push(...get(dot), ...op(F32X4_SPLAT), ...set(ds), ...i32c(0), ...set(k));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, v4end, 16, [
    ...dAt, ...vload(pAt), ...vload(dAt), ...get(ds), ...op(F32X4_SUB), ...op(F32X4_MUL), ...op(V128_STORE), 2, 0,
  ]));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, nend, 4, [
    ...dAt, ...f32load(pAt), ...f32load(dAt), ...get(dot), F32_SUB, F32_MUL, F32_STORE, 2, 0,
  ]));
  // zeros from n to the row's end
  perRow.push(...dAt, ...i32c(0), ...get(rowEnd), ...get(k), I32_SUB, ...MEMORY_FILL);
  perRow.push(...get(prow), ...get(rowEnd), I32_ADD, ...set(prow), ...get(drow), ...get(rowEnd), I32_ADD, ...set(drow));
  c.push(...whileBelow(t, T, 1, perRow));
  return f.body(c);
}

/**
 * lnFwd(inp, out, w, b, mean, rstd, rows, C, eps): layernorm of `rows` rows of C floats (C a multiple of 4),
 * as CpuReferenceBackend.layernormForward in float32: mean = Σx/C, var = Σ(x − mean)²/C (two passes, four lanes),
 * rstd = 1/√(var + eps), out = (x − mean)·rstd·w + b; mean and rstd stored per row.
 */
function layernormForwardBody(): number[] {
  const INP = 0, OUT = 1, W = 2, Bi = 3, MEAN = 4, RSTD = 5, ROWS = 6, Cn = 7, EPS = 8;
  const f = new FnBuilder([I32, I32, I32, I32, I32, I32, I32, I32, F32]);
  const r = f.local(I32), k = f.local(I32), rowBytes = f.local(I32), row = f.local(I32), orow = f.local(I32);
  const mean = f.local(F32), rstd = f.local(F32), invC = f.local(F32);
  const acc = f.local(V128), mv = f.local(V128), rv = f.local(V128), d = f.local(V128);
  const at = (base: number) => [...get(base), ...get(k), I32_ADD];
  const c: number[] = [];
  c.push(...get(Cn), ...i32c(2), I32_SHL, ...set(rowBytes));
  c.push(...f32c(1), ...get(Cn), F32_CONVERT_I32_S, F32_DIV, ...set(invC));
  c.push(...i32c(0), ...set(r), ...get(INP), ...set(row), ...get(OUT), ...set(orow));
  const perRow: number[] = [];
  // mean
  perRow.push(...f.f32x4(0), ...set(acc), ...i32c(0), ...set(k));
  perRow.push(...whileBelow(k, rowBytes, 16, [...get(acc), ...vload(at(row)), ...op(F32X4_ADD), ...set(acc)]));
  perRow.push(...laneSum(acc), ...get(invC), F32_MUL, ...tee(mean), ...op(F32X4_SPLAT), ...set(mv));
  // variance, rstd
  perRow.push(...f.f32x4(0), ...set(acc), ...i32c(0), ...set(k));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, rowBytes, 16, [
    ...vload(at(row)), ...get(mv), ...op(F32X4_SUB), ...tee(d), ...get(d), ...op(F32X4_MUL), ...get(acc), ...op(F32X4_ADD),
    ...set(acc),
  ]));
  perRow.push(...f32c(1), ...laneSum(acc), ...get(invC), F32_MUL, ...get(EPS), F32_ADD, F32_SQRT, F32_DIV);
  perRow.push(...tee(rstd), ...op(F32X4_SPLAT), ...set(rv));
  // out = (x − mean)·rstd·w + b
  perRow.push(...i32c(0), ...set(k));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, rowBytes, 16, [
    ...at(orow), ...vload(at(row)), ...get(mv), ...op(F32X4_SUB), ...get(rv), ...op(F32X4_MUL), ...vload(at(W)),
    ...op(F32X4_MUL), ...vload(at(Bi)), ...op(F32X4_ADD), ...op(V128_STORE), 2, 0,
  ]));
  // mean[r], rstd[r]
  perRow.push(...get(MEAN), ...get(r), ...i32c(2), I32_SHL, I32_ADD, ...get(mean), F32_STORE, 2, 0);
  perRow.push(...get(RSTD), ...get(r), ...i32c(2), I32_SHL, I32_ADD, ...get(rstd), F32_STORE, 2, 0);
  perRow.push(
    ...get(row),
    ...get(rowBytes),
    I32_ADD,
    ...set(row),
    ...get(orow),
    ...get(rowBytes),
    I32_ADD,
    ...set(orow),
  );
  c.push(...whileBelow(r, ROWS, 1, perRow));
  return f.body(c);
}

/**
 * lnBwd(inp, dout, dinp, w, mean, rstd, dw, db, rows, C, acc): layernorm's backward over `rows` rows, as
 * CpuReferenceBackend.layernormBackward in float32: with x̂ = (x − mean)·rstd and g = dout·w,
 * db += dout, dw += dout·x̂ (float32 accumulators at dw, db), dinp (=|+=) rstd·(g − mean(g) − x̂·mean(g·x̂)).
 */
function layernormBackwardBody(): number[] {
  const INP = 0, DOUT = 1, DINP = 2, W = 3, MEAN = 4, RSTD = 5, DW = 6, DB = 7, ROWS = 8, Cn = 9, ACC = 10;
  const f = new FnBuilder([I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const r = f.local(I32), k = f.local(I32), rowBytes = f.local(I32), off = f.local(I32), invC = f.local(F32);
  const mv = f.local(V128), rv = f.local(V128), gs = f.local(V128), gx = f.local(V128), xh = f.local(V128);
  const g = f.local(V128), dy = f.local(V128), dd = f.local(V128);
  // addresses: row arrays at base + off + k, per-channel arrays at base + k
  const rowAt = (base: number) => [...get(base), ...get(off), I32_ADD, ...get(k), I32_ADD];
  const chAt = (base: number) => [...get(base), ...get(k), I32_ADD];
  const perRowScalar = (base: number) => [...get(base), ...get(r), ...i32c(2), I32_SHL, I32_ADD, F32_LOAD, 2, 0];
  const xhat = [...vload(rowAt(INP)), ...get(mv), ...op(F32X4_SUB), ...get(rv), ...op(F32X4_MUL), ...set(xh)];
  const c: number[] = [];
  c.push(...get(Cn), ...i32c(2), I32_SHL, ...set(rowBytes));
  c.push(...f32c(1), ...get(Cn), F32_CONVERT_I32_S, F32_DIV, ...set(invC));
  c.push(...i32c(0), ...set(r), ...i32c(0), ...set(off));
  const perRow: number[] = [];
  perRow.push(
    ...perRowScalar(MEAN),
    ...op(F32X4_SPLAT),
    ...set(mv),
    ...perRowScalar(RSTD),
    ...op(F32X4_SPLAT),
    ...set(rv),
  );
  // Σ g, Σ g·x̂
  perRow.push(...f.f32x4(0), ...set(gs), ...f.f32x4(0), ...set(gx), ...i32c(0), ...set(k));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, rowBytes, 16, [
    ...xhat, ...vload(rowAt(DOUT)), ...vload(chAt(W)), ...op(F32X4_MUL), ...set(g),
    ...get(gs), ...get(g), ...op(F32X4_ADD), ...set(gs),
    ...get(gx), ...get(g), ...get(xh), ...op(F32X4_MUL), ...op(F32X4_ADD), ...set(gx),
  ]));
  // gs, gx: the row means, in every lane
  perRow.push(...laneSum(gs), ...get(invC), F32_MUL, ...op(F32X4_SPLAT), ...set(gs));
  perRow.push(...laneSum(gx), ...get(invC), F32_MUL, ...op(F32X4_SPLAT), ...set(gx));
  perRow.push(...i32c(0), ...set(k));
  // deno-fmt-ignore
  perRow.push(...whileBelow(k, rowBytes, 16, [
    ...xhat, ...vload(rowAt(DOUT)), ...set(dy),
    ...chAt(DB), ...vload(chAt(DB)), ...get(dy), ...op(F32X4_ADD), ...op(V128_STORE), 2, 0,
    ...chAt(DW), ...vload(chAt(DW)), ...get(dy), ...get(xh), ...op(F32X4_MUL), ...op(F32X4_ADD), ...op(V128_STORE), 2, 0,
    // d = rstd·(dy·w − mean(g) − x̂·mean(g·x̂))
    ...get(dy), ...vload(chAt(W)), ...op(F32X4_MUL), ...get(gs), ...op(F32X4_SUB), ...get(xh), ...get(gx), ...op(F32X4_MUL),
    ...op(F32X4_SUB), ...get(rv), ...op(F32X4_MUL), ...set(dd),
    ...rowAt(DINP), ...vload(rowAt(DINP)), ...get(dd), ...op(F32X4_ADD), ...get(dd), ...get(ACC), SELECT,
    ...op(V128_STORE), 2, 0,
  ]));
  perRow.push(...get(off), ...get(rowBytes), I32_ADD, ...set(off));
  c.push(...whileBelow(r, ROWS, 1, perRow));
  return f.body(c);
}

/**
 * drop(src, dst, n4, base, key, threshold, scale, acc): the dropout mask of dropout_hash.ts on n4 vec4s,
 * element k being flat index base + k:  dst[k] (=|+= with acc) keep(base + k) ? src[k]·scale : 0  (src and
 * dst may be the same),
 * with keep(i) = lowbias32(lowbias32(i) ⊕ key) ≥ threshold in unsigned 32-bit lanes. src·scale is the float32
 * product, the same number as the loops' fround(p·scale).
 */
function dropBody(): number[] {
  const SRC = 0, DST = 1, N = 2, BASE = 3, KEY = 4, THRESHOLD = 5, SCALE = 6, ACC = 7;
  const f = new FnBuilder([I32, I32, I32, I32, I32, I32, F32, I32]);
  const off = f.local(I32), idx = f.local(V128), h = f.local(V128), key = f.local(V128), thr = f.local(V128);
  const sc = f.local(V128);
  // lowbias32 of the v128 in local h, left in h
  const xorShift = (k: number) => [...get(h), ...get(h), ...i32c(k), ...op(I32X4_SHR_U), ...op(V128_XOR), ...set(h)];
  const times = (m: number) => [...get(h), ...f.i32x4(m | 0), ...op(I32X4_MUL), ...set(h)];
  const lowbias = [...xorShift(16), ...times(0x7feb352d), ...xorShift(15), ...times(0x846ca68b), ...xorShift(16)];
  const c: number[] = [];
  c.push(...get(KEY), ...op(I32X4_SPLAT), ...set(key), ...get(THRESHOLD), ...op(I32X4_SPLAT), ...set(thr));
  c.push(...get(SCALE), ...op(F32X4_SPLAT), ...set(sc));
  // idx = base + [0, 1, 2, 3], then + 4 each pass
  c.push(...get(BASE), ...op(I32X4_SPLAT), ...iota(), ...op(I32X4_ADD), ...set(idx));
  const body: number[] = [];
  body.push(...get(idx), ...set(h), ...lowbias, ...get(h), ...get(key), ...op(V128_XOR), ...set(h), ...lowbias);
  body.push(...get(DST), ...get(off), I32_ADD); // address for the store
  body.push(...vload([...get(SRC), ...get(off), I32_ADD]), ...get(sc), ...op(F32X4_MUL));
  body.push(...get(h), ...get(thr), ...op(I32X4_GE_U), ...op(V128_AND), ...set(h));
  // acc ? dst + masked : masked (`select` evaluates both; without acc the load reads what is there, unused)
  body.push(...vload([...get(DST), ...get(off), I32_ADD]), ...get(h), ...op(F32X4_ADD), ...get(h), ...get(ACC), SELECT);
  body.push(...op(V128_STORE), 2, 0);
  body.push(...get(idx), ...f.i32x4(4), ...op(I32X4_ADD), ...set(idx));
  c.push(...vecLoop(N, off, body));
  return f.body(c);
}

/** A v128 constant [0, 1, 2, 3] (i32 lanes). */
function iota(): number[] {
  const b = new Uint8Array(16);
  new Int32Array(b.buffer).set([0, 1, 2, 3]);
  return [...op(V128_CONST), ...b];
}

/** `f32.const v`. */
function f32c(v: number): number[] {
  const b = new Uint8Array(4);
  new Float32Array(b.buffer)[0] = v;
  return [0x43, ...b];
}

/**
 * adamw(p, g, m, v, n4, clip, decay, w1, beta2, 1−beta2, stepSize, bc2Sqrt, eps): one AdamW step over n4
 * vec4s, in float32 (as torch's CPU AdamW), the formula and order of CpuReferenceBackend.adamw for w1 = 1−β1 < ½:
 *   g = grad·clip;  m = m + w1·(g − m);  v = v·β2 + (1−β2)·g·g;  p = p·decay − stepSize·(m / (√v / bc2Sqrt + eps))
 * Locals: off (i32); the eight scalars splatted; g, m, v.
 */
function adamwBody(): number[] {
  const P = 0, G = 1, Mo = 2, V = 3, N = 4; // i32 params; f32 params 5 … 12
  const OFF = 13, SPLAT = 14; // SPLAT + k holds f32 param 5 + k in all lanes (k < 8)
  const CLIP = SPLAT, DECAY = SPLAT + 1, W1 = SPLAT + 2, B2 = SPLAT + 3, OMB2 = SPLAT + 4, STEP = SPLAT + 5;
  const BC2 = SPLAT + 6, EPS = SPLAT + 7;
  const GV = 22, MV = 23, VV = 24;
  const addr = (base: number) => [...get(base), ...get(OFF), I32_ADD];
  const load = (base: number) => [...addr(base), ...op(V128_LOAD), 2, 0];
  const prologue: number[] = [];
  for (let k = 0; k < 8; k++) prologue.push(...get(5 + k), ...op(F32X4_SPLAT), ...set(SPLAT + k));
  const body: number[] = [];
  // g = grad·clip
  body.push(...load(G), ...get(CLIP), ...op(F32X4_MUL), ...set(GV));
  // m = m + w1·(g − m), stored
  body.push(...load(Mo), ...set(MV));
  body.push(...get(MV), ...get(W1), ...get(GV), ...get(MV), ...op(F32X4_SUB), ...op(F32X4_MUL), ...op(F32X4_ADD));
  body.push(...set(MV), ...addr(Mo), ...get(MV), ...op(V128_STORE), 2, 0);
  // v = v·β2 + (1−β2)·g·g, stored
  body.push(...addr(V), ...load(V), ...get(B2), ...op(F32X4_MUL));
  body.push(...get(OMB2), ...get(GV), ...op(F32X4_MUL), ...get(GV), ...op(F32X4_MUL), ...op(F32X4_ADD));
  body.push(LOCAL_TEE, VV, ...op(V128_STORE), 2, 0);
  // p = p·decay − stepSize·(m / (√v / bc2Sqrt + eps)), stored
  body.push(...addr(P), ...load(P), ...get(DECAY), ...op(F32X4_MUL));
  body.push(...get(STEP), ...get(MV), ...get(VV), ...op(F32X4_SQRT), ...get(BC2), ...op(F32X4_DIV));
  body.push(...get(EPS), ...op(F32X4_ADD), ...op(F32X4_DIV), ...op(F32X4_MUL), ...op(F32X4_SUB));
  body.push(...op(V128_STORE), 2, 0);
  return [2, 1, 0x7f, 11, 0x7b, ...prologue, ...vecLoop(N, OFF, body), END];
}

/**
 * The module: imports memory `env.mem`; exports fwd, bwd, exp, fwdD, mul, softmax, softmaxBwd, drop, lnFwd, lnBwd,
 * adamw.
 */
export function moduleBytes(): Uint8Array<ArrayBuffer> {
  return wasmModule([
    { name: "fwd", params: [I32, I32, I32], body: forwardBody() },
    { name: "bwd", params: [I32, I32, I32, I32, I32], body: backwardBody() },
    { name: "exp", params: [I32, I32, I32, F32], body: expBody() },
    { name: "fwdD", params: [I32, I32, I32, I32], body: forwardDerivBody() },
    { name: "mul", params: [I32, I32, I32, I32, I32], body: mulBody() },
    { name: "softmax", params: [I32, I32, I32, I32, I32], body: softmaxBody() },
    { name: "softmaxBwd", params: [I32, I32, I32], body: softmaxBackwardBody() },
    { name: "drop", params: [I32, I32, I32, I32, I32, I32, F32, I32], body: dropBody() },
    { name: "lnFwd", params: [I32, I32, I32, I32, I32, I32, I32, I32, F32], body: layernormForwardBody() },
    { name: "lnBwd", params: [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32], body: layernormBackwardBody() },
    { name: "adamw", params: [I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32], body: adamwBody() },
  ]);
}
