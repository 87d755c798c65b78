/**
 * Elementwise maths in WebAssembly SIMD for the CPU backend's fast path, assembled by hand like cpu_wasm.ts,
 * four floats per instruction:
 * - GELU (HF's `gelu_new`, the tanh form) forward and backward: the most expensive elementwise op (37.7 M
 *   elements a step at GPT-2's shape, ≈ 1 s in plain TypeScript, where `Math.tanh` dominates);
 * - exp(x − shift) over a row: the softmax of attention (B·NH·T²/2 exponentials per layer);
 * - one AdamW step in float32 (102 M parameters a step at GPT-2's shape; ≈ 6.7 ns each in TypeScript).
 *
 * Maths, per lane (x the input, S = √(2/π), c = 0.044715):
 *   u = S·(x + c·x³),  th = tanh(u) = (e − 1)/(e + 1) with e = exp(2u), 2u clamped to [−80, 80]
 *   (tanh(40) is 1 in float32, so the clamp changes nothing and keeps e finite; where (1 + e)² overflows
 *   to ∞, 1 − th² = 4e/(1 + e)² is 0, as it should be);
 *   forward: out = 0.5·x·(1 + th)
 *   backward: dinp (=|+=) dout·[0.5·(1 + th) + 0.5·x·(1 − th²)·S·(1 + 3c·x²)], 1 − th² = 4e/(1 + e)²
 * exp(y): n = round(y·log₂e), r = y − n·ln2 (ln2 split in a high part exact in float32 and a low part, so
 * that n·ln2_hi has no rounding error), e^r by its Taylor series to degree 7 (|r| ≤ ln2/2: the first term
 * left out is < 6e−9, below float32's resolution), times 2ⁿ built from its exponent bits.
 * Accuracy against the float64 loops of cpu.ts: ≈ 1e−7 absolute on tanh (float32 arithmetic, and the
 * cancellation in e − 1 near u = 0 costs absolute, not relative, error), which `(1 + th)` absorbs; the tests
 * in tests/cpu_fast_test.ts hold it to 4e−7 relative to the output's scale.
 *
 * exp alone: x − shift clamped to [−87, 88] (so 2ⁿ stays a normal float32), then as above; relative error
 * ≈ 2e−7 (tests/cpu_fast_test.ts).
 *
 * Data is streamed through WASM memory in chunks of 16 K floats (64 KiB per array, so a chunk stays in
 * cache between the copy in, the kernel and the copy out).
 * @module
 */

import { F32, I32, simd, uleb, wasmModule } from "./wasm_asm.ts";

// opcodes
const BLOCK_VOID = 0x40, LOOP = 0x03, END = 0x0b, BR_IF = 0x0d, IF = 0x04, SELECT = 0x1b;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_CONST = 0x41, I32_ADD = 0x6a, I32_SUB = 0x6b;
const V128_LOAD = 0x00, V128_STORE = 0x0b, V128_CONST = 0x0c;
const F32X4_SPLAT = 0x13, F32X4_NEAREST = 0x6a, I32X4_SHL = 0xab, I32X4_ADD = 0xae;
const F32X4_ADD = 0xe4, F32X4_SUB = 0xe5, F32X4_MUL = 0xe6, F32X4_DIV = 0xe7, F32X4_MIN = 0xe8, F32X4_MAX = 0xe9;
const F32X4_SQRT = 0xe3;
const I32X4_TRUNC_SAT_F32X4_S = 0xf8;

const S = Math.sqrt(2 / Math.PI), C = 0.044715;
const LN2_HI = 0.693359375; // 0x3f318000: 9 significant bits, so n·LN2_HI is exact for |n| < 2¹⁵
const LN2_LO = Math.LN2 - LN2_HI;

/** A v128 constant with `v` in all four f32 lanes. */
function splat(v: number): number[] {
  const b = new Uint8Array(16);
  const f = new Float32Array(b.buffer);
  f.fill(v);
  return [...simd(V128_CONST), ...b];
}

/** A v128 constant with `v` in all four i32 lanes. */
function splatI32(v: number): number[] {
  const b = new Uint8Array(16);
  new Int32Array(b.buffer).fill(v);
  return [...simd(V128_CONST), ...b];
}

// locals: params (i32) first, then v128s
// fwd(inp, out, count4)            bwd(inp, dout, dinp, count4, accumulate)
const P_INP = 0, P_OUT = 1, P_N = 2; // fwd
const Q_INP = 0, Q_DOUT = 1, Q_DINP = 2, Q_N = 3, Q_ACC = 4; // bwd

/**
 * Code that leaves tanh(S·(x + c·x³)) on the stack, reading x from local `x`, with e = exp(2u) left in
 * `t1` and `t2` used as scratch (both v128).
 */
function tanhOfU(x: number, t1: number, t2: number): number[] {
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const op = (o: number) => simd(o);
  const c: number[] = [];
  // y = 2u = 2S·x·(1 + c·x²), clamped to [−80, 80]  → t1
  c.push(...get(x), ...get(x), ...op(F32X4_MUL), ...splat(C), ...op(F32X4_MUL), ...splat(1), ...op(F32X4_ADD));
  c.push(...get(x), ...op(F32X4_MUL), ...splat(2 * S), ...op(F32X4_MUL));
  c.push(...splat(80), ...op(F32X4_MIN), ...splat(-80), ...op(F32X4_MAX), ...set(t1));
  c.push(...expOf(t1, t2));
  // e → t1; th = (e − 1)/(e + 1)
  c.push(...set(t1));
  c.push(...get(t1), ...splat(1), ...op(F32X4_SUB), ...get(t1), ...splat(1), ...op(F32X4_ADD), ...op(F32X4_DIV));
  return c;
}

/**
 * Code that leaves exp(y) on the stack for y in local `t1` (|y| ≤ 88; `t1` is overwritten), using `t2` as
 * scratch.
 */
function expOf(t1: number, t2: number): number[] {
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const op = (o: number) => simd(o);
  const c: number[] = [];
  // n = nearest(y·log₂e)  → t2
  c.push(...get(t1), ...splat(Math.LOG2E), ...op(F32X4_MUL), ...op(F32X4_NEAREST), ...set(t2));
  // r = y − n·LN2_HI − n·LN2_LO  → t1
  c.push(...get(t1), ...get(t2), ...splat(LN2_HI), ...op(F32X4_MUL), ...op(F32X4_SUB));
  c.push(...get(t2), ...splat(LN2_LO), ...op(F32X4_MUL), ...op(F32X4_SUB), ...set(t1));
  // 2ⁿ = bits((n + 127) << 23)  → t2
  c.push(...get(t2), ...op(I32X4_TRUNC_SAT_F32X4_S), ...splatI32(127), ...op(I32X4_ADD));
  c.push(...i32c(23), ...op(I32X4_SHL), ...set(t2));
  // e^r = 1 + r(1 + r(1/2 + r(1/6 + r(1/24 + r(1/120 + r(1/720 + r/5040))))))  (Horner)
  c.push(...splat(1 / 5040));
  for (const k of [720, 120, 24, 6, 2, 1, 1]) {
    c.push(...get(t1), ...op(F32X4_MUL), ...splat(1 / k), ...op(F32X4_ADD));
  }
  // e^r·2ⁿ
  c.push(...get(t2), ...op(F32X4_MUL));
  return c;
}

function i32c(n: number): number[] {
  return [I32_CONST, ...uleb(n)]; // small non-negative constants only
}

/** A loop over `count` vec4s: `body` runs with the byte offset in local `off`. */
function vecLoop(count: number, off: number, body: number[]): number[] {
  const get = (l: number) => [LOCAL_GET, l];
  return [
    ...get(count),
    IF,
    BLOCK_VOID,
    ...i32c(0),
    LOCAL_SET,
    off,
    LOOP,
    BLOCK_VOID,
    ...body,
    ...get(off),
    ...i32c(16),
    I32_ADD,
    LOCAL_SET,
    off,
    ...get(count),
    ...i32c(1),
    I32_SUB,
    LOCAL_TEE,
    count,
    BR_IF,
    0,
    END,
    END,
  ];
}

/** fwd(inp, out, n4): out[i] = gelu(inp[i]) for n4 vec4s (byte addresses). Locals: off (i32), x, t1, t2. */
function forwardBody(): number[] {
  const OFF = 3, X = 4, T1 = 5, T2 = 6;
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const body: number[] = [];
  body.push(...get(P_INP), ...get(OFF), I32_ADD, ...simd(V128_LOAD), 2, 0, ...set(X));
  body.push(...get(P_OUT), ...get(OFF), I32_ADD); // address for the store
  body.push(...tanhOfU(X, T1, T2), ...splat(1), ...simd(F32X4_ADD));
  body.push(...get(X), ...simd(F32X4_MUL), ...splat(0.5), ...simd(F32X4_MUL));
  body.push(...simd(V128_STORE), 2, 0);
  return [2, 1, 0x7f, 3, 0x7b, ...vecLoop(P_N, OFF, body), END];
}

/** bwd(inp, dout, dinp, n4, acc): dinp[i] (=|+=) gelu'(inp[i])·dout[i]. Locals: off, x, t1, t2, th. */
function backwardBody(): number[] {
  const OFF = 5, X = 6, T1 = 7, T2 = 8, TH = 9;
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const op = (o: number) => simd(o);
  const body: number[] = [];
  body.push(...get(Q_INP), ...get(OFF), I32_ADD, ...op(V128_LOAD), 2, 0, ...set(X));
  body.push(...tanhOfU(X, T1, T2), ...set(TH));
  body.push(...get(Q_DINP), ...get(OFF), I32_ADD); // address for the store
  // 0.5·(1 + th)
  body.push(...get(TH), ...splat(1), ...op(F32X4_ADD), ...splat(0.5), ...op(F32X4_MUL));
  // + 0.5·x·(1 − th²)·S·(1 + 3c·x²), with x clamped to ±1e4 here (1 − th² is exactly 0 long before, and the
  // clamp keeps x·x² finite: 0·∞ would be NaN)
  body.push(...get(X), ...splat(1e4), ...op(F32X4_MIN), ...splat(-1e4), ...op(F32X4_MAX), ...set(X));
  // 1 − th² = 4e/(1 + e)² (tanhOfU left e in t1): no cancellation where th is near ±1
  body.push(...get(T1), ...splat(4), ...op(F32X4_MUL), ...get(T1), ...splat(1), ...op(F32X4_ADD));
  body.push(...get(T1), ...splat(1), ...op(F32X4_ADD), ...op(F32X4_MUL), ...op(F32X4_DIV));
  body.push(...get(X), ...op(F32X4_MUL), ...splat(0.5 * S), ...op(F32X4_MUL));
  body.push(...get(X), ...get(X), ...op(F32X4_MUL), ...splat(3 * C), ...op(F32X4_MUL), ...splat(1), ...op(F32X4_ADD));
  body.push(...op(F32X4_MUL), ...op(F32X4_ADD));
  // · dout
  body.push(...get(Q_DOUT), ...get(OFF), I32_ADD, ...op(V128_LOAD), 2, 0, ...op(F32X4_MUL), ...set(T1));
  // acc ? dinp + t1 : t1 (`select` evaluates both; without acc the load reads a stale chunk, unused)
  body.push(...get(Q_DINP), ...get(OFF), I32_ADD, ...op(V128_LOAD), 2, 0, ...get(T1), ...op(F32X4_ADD));
  body.push(...get(T1), ...get(Q_ACC), SELECT);
  body.push(...op(V128_STORE), 2, 0);
  return [2, 1, 0x7f, 4, 0x7b, ...vecLoop(Q_N, OFF, body), END];
}

/** exp(inp, out, n4, shift): out[i] = exp(inp[i] − shift) for n4 vec4s. Locals: off (i32), x, t. */
function expBody(): number[] {
  const INP = 0, OUT = 1, N = 2, SHIFT = 3, OFF = 4, X = 5, T = 6;
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const op = (o: number) => simd(o);
  const body: number[] = [];
  body.push(...get(OUT), ...get(OFF), I32_ADD); // address for the store
  body.push(...get(INP), ...get(OFF), I32_ADD, ...op(V128_LOAD), 2, 0, ...get(SHIFT), ...op(F32X4_SPLAT));
  body.push(...op(F32X4_SUB), ...splat(88), ...op(F32X4_MIN), ...splat(-87), ...op(F32X4_MAX), ...set(X));
  body.push(...expOf(X, T), ...op(V128_STORE), 2, 0);
  return [2, 1, 0x7f, 2, 0x7b, ...vecLoop(N, OFF, body), END];
}

/**
 * adamw(p, g, m, v, n4, clip, decay, w1, beta2, 1−beta2, stepSize, bc2Sqrt, eps): one AdamW step over n4
 * vec4s, in float32 (as torch's CPU AdamW), the formula and order of CpuBackend.adamw for w1 = 1−β1 < ½:
 *   g = grad·clip;  m = m + w1·(g − m);  v = v·β2 + (1−β2)·g·g;  p = p·decay − stepSize·(m / (√v / bc2Sqrt + eps))
 * Locals: off (i32); the eight scalars splatted; g, m, v.
 */
function adamwBody(): number[] {
  const P = 0, G = 1, Mo = 2, V = 3, N = 4; // i32 params; f32 params 5 … 12
  const OFF = 13, SPLAT = 14; // SPLAT + k holds f32 param 5 + k in all lanes (k < 8)
  const CLIP = SPLAT, DECAY = SPLAT + 1, W1 = SPLAT + 2, B2 = SPLAT + 3, OMB2 = SPLAT + 4, STEP = SPLAT + 5;
  const BC2 = SPLAT + 6, EPS = SPLAT + 7;
  const GV = 22, MV = 23, VV = 24;
  const get = (l: number) => [LOCAL_GET, l], set = (l: number) => [LOCAL_SET, l];
  const op = (o: number) => simd(o);
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

/** The module: imports memory `env.mem`, exports `fwd`, `bwd`, `exp` and `adamw`. */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  return wasmModule([
    { name: "fwd", params: [I32, I32, I32], body: forwardBody() },
    { name: "bwd", params: [I32, I32, I32, I32, I32], body: backwardBody() },
    { name: "exp", params: [I32, I32, I32, F32], body: expBody() },
    { name: "adamw", params: [I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32], body: adamwBody() },
  ]);
}

/** GELU forward and backward, and exp, over float32 arrays, through the SIMD module. */
export interface FastMath {
  forward(out: Float32Array, inp: Float32Array, n: number): void;
  backward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number, accumulate: boolean): void;
  /** out[0 … n) = exp(inp[off + i] − shift), for n ≤ 16384. */
  expShift(out: Float32Array, inp: Float32Array, off: number, n: number, shift: number): void;
  /** One AdamW step in float32 (see adamwBody; the caller checks w1 = 1−β1 < ½). */
  adamw(
    param: Float32Array,
    grad: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    c: AdamwConstants,
  ): void;
}

/** The scalars of one AdamW step, as CpuBackend.adamw computes them. */
export interface AdamwConstants {
  clip: number;
  decay: number;
  w1: number;
  beta2: number;
  stepSize: number;
  bc2Sqrt: number;
  eps: number;
}

/** Floats per chunk (per array). */
const CHUNK = 16384;

/** The SIMD maths, or the reason it cannot run (no WebAssembly, or no SIMD support). */
export function wasmSimdMath(): FastMath | { reason: string } {
  const mem = new WebAssembly.Memory({ initial: (4 * CHUNK * 4) / 65536 });
  let fwd: (inp: number, out: number, n4: number) => void;
  let bwd: (inp: number, dout: number, dinp: number, n4: number, acc: number) => void;
  let expFn: (inp: number, out: number, n4: number, shift: number) => void;
  let adamwFn: (p: number, g: number, m: number, v: number, n4: number, ...c: number[]) => void;
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), { env: { mem } });
    fwd = inst.exports.fwd as typeof fwd;
    bwd = inst.exports.bwd as typeof bwd;
    expFn = inst.exports.exp as typeof expFn;
    adamwFn = inst.exports.adamw as typeof adamwFn;
  } catch (e) {
    return { reason: `WebAssembly SIMD is not available: ${e instanceof Error ? e.message : String(e)}` };
  }
  const f = new Float32Array(mem.buffer);
  const A = 0, B = CHUNK, D = 2 * CHUNK, E = 3 * CHUNK; // float offsets of the four arrays
  return {
    forward(out, inp, n) {
      for (let s = 0; s < n; s += CHUNK) {
        const m = Math.min(CHUNK, n - s);
        f.set(inp.subarray(s, s + m), A);
        fwd(4 * A, 4 * B, Math.ceil(m / 4)); // a partial last vec4 reads stale lanes: never copied out
        out.set(f.subarray(B, B + m), s);
      }
    },
    backward(dinp, inp, dout, n, accumulate) {
      for (let s = 0; s < n; s += CHUNK) {
        const m = Math.min(CHUNK, n - s);
        f.set(inp.subarray(s, s + m), A);
        f.set(dout.subarray(s, s + m), B);
        if (accumulate) f.set(dinp.subarray(s, s + m), D);
        bwd(4 * A, 4 * B, 4 * D, Math.ceil(m / 4), accumulate ? 1 : 0);
        dinp.set(f.subarray(D, D + m), s);
      }
    },
    expShift(out, inp, off, n, shift) {
      if (n > CHUNK) throw new Error(`expShift: ${n} elements exceed one chunk (${CHUNK})`);
      f.set(inp.subarray(off, off + n), A);
      expFn(4 * A, 4 * B, Math.ceil(n / 4), shift);
      out.set(f.subarray(B, B + n));
    },
    adamw(param, grad, m, v, n, c) {
      for (let s = 0; s < n; s += CHUNK) {
        const k = Math.min(CHUNK, n - s);
        f.set(param.subarray(s, s + k), A);
        f.set(grad.subarray(s, s + k), B);
        f.set(m.subarray(s, s + k), D);
        f.set(v.subarray(s, s + k), E);
        // a partial last vec4 computes stale lanes (maybe NaN): never copied out
        adamwFn(
          4 * A,
          4 * B,
          4 * D,
          4 * E,
          Math.ceil(k / 4),
          c.clip,
          c.decay,
          c.w1,
          c.beta2,
          1 - c.beta2,
          c.stepSize,
          c.bc2Sqrt,
          c.eps,
        );
        param.set(f.subarray(A, A + k), s);
        m.set(f.subarray(D, D + k), s);
        v.set(f.subarray(E, E + k), s);
      }
    },
  };
}
