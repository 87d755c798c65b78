/**
 * The few pieces of the WebAssembly binary format that the CPU backend's hand-assembled SIMD kernels
 * (wasm_matmul.ts, wasm_math.ts) share: LEB128 numbers, the SIMD opcode prefix, sections, names, function
 * types, and a module that imports its memory as `env.mem` and exports its functions by name.
 * @module
 */

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** A SIMD instruction (prefix 0xfd, then its opcode in LEB128). */
export function simd(op: number): number[] {
  return [0xfd, ...uleb(op)];
}

/** Value types. */
export const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;

/** One exported function: its name, parameter types and body (locals declaration, code, `end`). */
export interface WasmFunction {
  name: string;
  params: readonly number[];
  body: readonly number[];
}

/** A module that imports memory `env.mem` (at least 1 page) and exports `fns` (no results), in order. */
export function wasmModule(fns: readonly WasmFunction[]): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const str = (s: string) => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
  const type = section(1, [...uleb(fns.length), ...fns.flatMap((f) => [0x60, f.params.length, ...f.params, 0])]);
  const imp = section(2, [1, ...str("env"), ...str("mem"), 0x02, 0x00, 0x01]); // memory, min 1 page
  const func = section(3, [...uleb(fns.length), ...fns.map((_, i) => i)]);
  const exp = section(7, [...uleb(fns.length), ...fns.flatMap((f, i) => [...str(f.name), 0x00, i])]);
  const code = section(10, [...uleb(fns.length), ...fns.flatMap((f) => [...uleb(f.body.length), ...f.body])]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...type, ...imp, ...func, ...exp, ...code]);
}

/** Signed LEB128 (what `i32.const` takes: 64 and up need two bytes). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

/**
 * One function's locals and constants, for kernels assembled by hand: `local(type)` numbers a new local
 * after the parameters; `f32x4(v)` / `i32x4(v)` give the code that reads a v128 constant with `v` in all four
 * lanes from a local set once before the code (so a loop reads a register or a stack slot instead of
 * building the constant on every pass); `body(code)` wraps the code with the locals' declaration and those
 * settings into a function body.
 */
export class FnBuilder {
  readonly #types: number[] = [];
  readonly #consts = new Map<string, { local: number; bytes: number[] }>();

  constructor(readonly params: readonly number[]) {}

  /** A new local of `type` (I32, F32 or V128): its index. */
  local(type: number): number {
    this.#types.push(type);
    return this.params.length + this.#types.length - 1;
  }

  /** `local.get` of a v128 holding the float32 `v` in all lanes. */
  f32x4(v: number): number[] {
    const b = new Uint8Array(16);
    new Float32Array(b.buffer).fill(v);
    return this.#constant(`f${Math.fround(v)}`, b);
  }

  /** `local.get` of a v128 holding the int32 `v` in all lanes. */
  i32x4(v: number): number[] {
    const b = new Uint8Array(16);
    new Int32Array(b.buffer).fill(v);
    return this.#constant(`i${v | 0}`, b);
  }

  #constant(key: string, bytes: Uint8Array): number[] {
    let c = this.#consts.get(key);
    if (!c) {
      c = { local: this.local(V128), bytes: [...simd(0x0c), ...bytes] }; // v128.const
      this.#consts.set(key, c);
    }
    return [0x20, ...uleb(c.local)]; // local.get
  }

  /** The function body: locals (grouped by runs of one type), the constants' settings, `code`, `end`. */
  body(code: readonly number[]): number[] {
    const groups: number[][] = [];
    for (const t of this.#types) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]!++;
      else groups.push([1, t]);
    }
    const decl = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n!), t!])];
    const init = [...this.#consts.values()].flatMap((c) => [...c.bytes, 0x21, ...uleb(c.local)]); // local.set
    return [...decl, ...init, ...code, 0x0b];
  }
}
