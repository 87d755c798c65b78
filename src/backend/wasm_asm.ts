/**
 * The few pieces of the WebAssembly binary format that the CPU backend's hand-assembled SIMD kernels
 * (cpu_wasm.ts, cpu_wasm_math.ts) share: LEB128 numbers, the SIMD opcode prefix, sections, names, function
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
