/**
 * A kernel's interface, read from its WGSL once when the kernel is loaded: the fields of `struct Params`
 * (binding 0, the uniform), the storage bindings 1… with their names and access, the `override` constants
 * and the entry points. The backend passes uniforms and buffers by these names; a name the kernel does
 * not declare, or one it declares but the call leaves out, is an error naming the kernel and the field.
 * @module
 */

/** The scalar types a `struct Params` field may have (each 4 bytes, so fields need no padding). */
export type ParamType = "u32" | "i32" | "f32";

/** One field of `struct Params`. */
export interface ParamField {
  readonly name: string;
  readonly type: ParamType;
}

/** One storage binding: `@binding(i + 1)` for entry i of {@link KernelLayout.bindings}. */
export interface StorageBinding {
  readonly name: string;
  /** `read_write` (true) or `read`. */
  readonly writable: boolean;
}

/** What one WGSL file declares for the host. */
export interface KernelLayout {
  /** The file, for errors. */
  readonly file: string;
  /** The uniform's fields in declaration order, field i at byte 4·i. */
  readonly params: readonly ParamField[];
  /** Storage bindings 1 … n in order. */
  readonly bindings: readonly StorageBinding[];
  /** The names of its `override` constants. */
  readonly overrides: ReadonlySet<string>;
  /** Its `@compute` entry points. */
  readonly entries: ReadonlySet<string>;
}

/** Bytes of the uniform slot each dispatch gets, so `struct Params` holds at most 64 fields. */
export const MAX_PARAMS_BYTES = 256;

const SCALARS: ReadonlySet<string> = new Set(["u32", "i32", "f32"]);

/** The code without `//` and `/* … *\/` comments (each replaced by a space). */
export function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
}

/**
 * Read the layout of the kernel `file` from its source. Binding 0 must be `var<uniform> p: Params`, the
 * storage bindings must be numbered 1, 2, … without gaps, all in group 0, and `struct Params` may hold only
 * u32, i32 and f32 fields.
 */
export function parseKernelLayout(file: string, code: string): KernelLayout {
  const fail = (what: string): never => {
    throw new Error(`Cannot load kernel ${file}: ${what}`);
  };
  const src = stripComments(code);

  const struct = /\bstruct\s+Params\s*\{([^}]*)\}/.exec(src);
  if (!struct) fail(`no "struct Params" (the uniform of binding 0)`);
  const params: ParamField[] = [];
  for (const part of struct![1]!.split(",")) {
    const field = part.trim();
    if (field === "") continue;
    const m = /^(\w+)\s*:\s*(\S+)$/.exec(field);
    if (!m) fail(`cannot read struct Params field "${field}" (expected "name: u32", i32 or f32)`);
    const [, name, type] = m!;
    if (!SCALARS.has(type!)) fail(`struct Params field "${name}" is ${type}, expected u32, i32 or f32`);
    if (params.some((f) => f.name === name)) fail(`struct Params declares field "${name}" twice`);
    params.push({ name: name!, type: type as ParamType });
  }
  if (params.length * 4 > MAX_PARAMS_BYTES) {
    fail(`struct Params has ${params.length} fields, more than the ${MAX_PARAMS_BYTES / 4} a uniform slot holds`);
  }

  const found = new Map<number, StorageBinding>();
  let uniform = false;
  const decl =
    /@group\(\s*(\d+)\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*<\s*(\w+)\s*(?:,\s*(\w+)\s*)?>\s*(\w+)\s*:\s*(\w+)/g;
  for (const m of src.matchAll(decl)) {
    const [, group, index, space, access, name, type] = m;
    const binding = Number(index);
    if (group !== "0") fail(`binding "${name}" is in group ${group}; the backend binds group 0 only`);
    if (binding === 0) {
      if (space !== "uniform" || type !== "Params") fail(`binding 0 must be "var<uniform> p: Params", not "${name}"`);
      uniform = true;
      continue;
    }
    if (space !== "storage") fail(`binding ${binding} ("${name}") is var<${space}>, expected var<storage, …>`);
    if (access !== undefined && access !== "read" && access !== "read_write") {
      fail(`binding ${binding} ("${name}") has access "${access}", expected read or read_write`);
    }
    if (found.has(binding)) fail(`binding ${binding} is declared twice ("${found.get(binding)!.name}", "${name}")`);
    found.set(binding, { name: name!, writable: access === "read_write" });
  }
  if (!uniform) fail(`no "@group(0) @binding(0) var<uniform> p: Params"`);
  const bindings: StorageBinding[] = [];
  for (let i = 1; i <= found.size; i++) {
    const b = found.get(i);
    if (!b) fail(`bindings are not numbered 1 … ${found.size} (binding ${i} is missing)`);
    bindings.push(b!);
  }

  const overrides = new Set([...src.matchAll(/\boverride\s+(\w+)/g)].map((m) => m[1]!));
  const entries = new Set([...src.matchAll(/@compute\b[^;{}]*?\bfn\s+(\w+)/g)].map((m) => m[1]!));
  return { file, params, bindings, overrides, entries };
}

/**
 * Write the uniform values `values` (by field name) into `view` in the layout's order and types.
 * `label` (`file:entry`) names the kernel in the error for a missing or unknown name.
 */
export function packParams(
  layout: KernelLayout,
  label: string,
  values: Readonly<Record<string, number>>,
  view: DataView,
): void {
  const fields = layout.params;
  let given = 0;
  for (const _ in values) given++;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    const v = values[f.name];
    if (v === undefined) {
      throw new Error(`Cannot dispatch ${label}: parameter "${f.name}" of struct Params is missing`);
    }
    if (f.type === "f32") view.setFloat32(i * 4, v, true);
    else if (f.type === "i32") view.setInt32(i * 4, v, true);
    else view.setUint32(i * 4, v, true);
  }
  if (given !== fields.length) {
    const unknown = Object.keys(values).find((k) => !fields.some((f) => f.name === k));
    throw new Error(
      `Cannot dispatch ${label}: unknown parameter "${unknown}" (struct Params has ${
        fields.map((f) => f.name).join(", ")
      })`,
    );
  }
}

/**
 * The buffers `bufs` (by binding name; null binds a placeholder) in binding order, 1 … n. `label` names the
 * kernel in the error for a missing or unknown name.
 */
export function orderBindings<T>(
  layout: KernelLayout,
  label: string,
  bufs: Readonly<Record<string, T | null>>,
): (T | null)[] {
  const list = layout.bindings;
  const out: (T | null)[] = new Array(list.length);
  let given = 0;
  for (const _ in bufs) given++;
  for (let i = 0; i < list.length; i++) {
    const b = bufs[list[i]!.name];
    if (b === undefined) {
      throw new Error(
        `Cannot dispatch ${label}: binding ${i + 1} "${list[i]!.name}" is missing (pass null for a placeholder)`,
      );
    }
    out[i] = b;
  }
  if (given !== list.length) {
    const unknown = Object.keys(bufs).find((k) => !list.some((b) => b.name === k));
    throw new Error(
      `Cannot dispatch ${label}: unknown binding "${unknown}" (the kernel binds ${list.map((b) => b.name).join(", ")})`,
    );
  }
  return out;
}

/** Check that every override constant in `constants` is declared by the kernel. */
export function checkOverrides(layout: KernelLayout, label: string, constants: Readonly<Record<string, number>>): void {
  for (const name in constants) {
    if (!layout.overrides.has(name)) {
      const known = [...layout.overrides].join(", ") || "none";
      throw new Error(`Cannot dispatch ${label}: unknown override "${name}" (the kernel declares ${known})`);
    }
  }
}
