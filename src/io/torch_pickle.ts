/**
 * Read `pytorch_model.bin` (a `torch.save`d state dict) without Python.
 *
 * Two container formats exist:
 * - **zip** (torch ≥ 1.6): a zip archive whose single top folder (named after the file, so it varies)
 *   holds `data.pkl` (the pickled state dict) and `data/<key>` (one raw little-endian storage per key).
 * - **legacy stream**: five pickles back to back — a magic number, the protocol version (1001), a
 *   sys_info dict, the state dict, then the list of storage keys — followed by each storage in that
 *   list's order as an int64 element count and the raw data.
 *
 * The state dict pickle is run on a minimal pickle VM that knows the opcodes `pickle` emits for a dict
 * of tensors and only the globals a state dict needs (`torch._utils._rebuild_tensor_v2` and friends,
 * `collections.OrderedDict`, the `torch.*Storage` types); anything else fails with its name. Tensors are
 * materialised after unpickling from (storage, offset, size, stride), so shared storages (a tied
 * `lm_head.weight`) and non-contiguous views both come out as fresh contiguous arrays.
 *
 * Hostile or broken files fail fast with bounded memory, and every error starts with the file name:
 * - every length a pickle opcode carries is checked against the bytes left before anything is read;
 * - a tensor view is checked against its storage's element count before any array is made, and may
 *   not have more elements than its storage (a stride-0 view of shape [2^30] would otherwise turn a
 *   1 KB file into gigabytes);
 * - zip entries must be stored (method 0), which is what `torch.save` writes: deflated entries are
 *   refused rather than inflated, so a small entry cannot expand to gigabytes; central-directory sizes
 *   and offsets are checked against the file length (the zip reader is ./zip.ts).
 * @module
 */

import { decodeElements, dtypeSize, type ReadTensor } from "./safetensors.ts";
import { readZipDirectory, readZipEntry } from "./zip.ts";

/** Storage classes → safetensors dtype names. */
const STORAGE_DTYPES: Record<string, string> = {
  FloatStorage: "F32",
  DoubleStorage: "F64",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

/** The magic number that starts a legacy `torch.save` stream. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

// ---------------------------------------------------------------------------------------------------
// Values of the pickle VM

/** A reference to a Python global (`module.name`), as GLOBAL / STACK_GLOBAL push it. */
class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get full(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage, as a persistent id names it. `elemOffset` is non-zero only for legacy storage views. */
class StorageRef {
  constructor(readonly key: string, readonly dtype: string, readonly numel: number, readonly elemOffset = 0) {}
}

/** A tensor before materialisation: a strided view of a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** Hooks the container format gives the pickle VM. */
interface PickleContext {
  file: string;
  /** Resolve a persistent id (BINPERSID / PERSID). */
  persistentLoad(pid: unknown): unknown;
}

// ---------------------------------------------------------------------------------------------------
// The pickle VM

function asInt(v: unknown, what: string, ctx: PickleContext): number {
  if (typeof v === "bigint" && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(v);
  }
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new Error(`Cannot read ${ctx.file}: ${what} is not an integer (${describe(v)})`);
  }
  return v;
}

function asIntList(v: unknown, what: string, ctx: PickleContext): number[] {
  if (!Array.isArray(v)) throw new Error(`Cannot read ${ctx.file}: ${what} is not a tuple (${describe(v)})`);
  return v.map((x, i) => asInt(x, `${what}[${i}]`, ctx));
}

function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyGlobal) return v.full;
  if (v instanceof TensorRef) return "a tensor";
  if (v instanceof StorageRef) return "a storage";
  if (v instanceof Map) return "a dict";
  if (Array.isArray(v)) return "a tuple/list";
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/** Call a global (REDUCE / NEWOBJ). Only what a state dict needs; anything else names the global. */
function callGlobal(fn: unknown, args: unknown, ctx: PickleContext): unknown {
  if (!(fn instanceof PyGlobal)) throw new Error(`Cannot read ${ctx.file}: pickle calls ${describe(fn)}, not a global`);
  const a = Array.isArray(args) ? args : [];
  switch (fn.full) {
    case "collections.OrderedDict":
    case "builtins.dict":
      if (a.length > 0) throw new Error(`Cannot read ${ctx.file}: ${fn.full} with arguments is not supported`);
      return new Map();
    case "torch._utils._rebuild_tensor":
    case "torch._utils._rebuild_tensor_v2": {
      // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
      const [storage, offset, size, stride] = a;
      if (!(storage instanceof StorageRef)) {
        throw new Error(`Cannot read ${ctx.file}: ${fn.full} got ${describe(storage)} instead of a storage`);
      }
      return new TensorRef(
        storage,
        asInt(offset, "tensor storage offset", ctx),
        asIntList(size, "tensor size", ctx),
        asIntList(stride, "tensor stride", ctx),
      );
    }
    case "torch._utils._rebuild_parameter":
    case "torch._utils._rebuild_parameter_with_state": {
      // (data, requires_grad, backward_hooks[, state]): a Parameter is its data for our purposes.
      const [data] = a;
      if (!(data instanceof TensorRef)) {
        throw new Error(`Cannot read ${ctx.file}: ${fn.full} got ${describe(data)} instead of a tensor`);
      }
      return data;
    }
    case "torch._tensor._rebuild_from_type_v2": {
      // (func, type, args, state): rebuild with func(*args); the subclass type (e.g. Parameter) is dropped.
      const [inner, , innerArgs] = a;
      return callGlobal(inner, innerArgs, ctx);
    }
  }
  throw new Error(`Cannot read ${ctx.file}: unsupported pickle global ${fn.full}`);
}

/** Run one pickle starting at `bytes[start]`. Returns the unpickled value and the offset after STOP. */
function unpickle(bytes: Uint8Array, start: number, ctx: PickleContext): { value: unknown; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const latin1 = new TextDecoder("latin1");
  let pos = start;
  const stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${ctx.file}: ${msg}`);
  };
  // Every read goes through need(): a negative or oversize length (from a hostile length field) is
  // refused here, before any array of that size exists.
  const need = (n: number): number => {
    if (!Number.isSafeInteger(n) || n < 0) fail(`pickle length ${n} at offset ${pos} is negative`);
    if (pos + n > bytes.length) {
      fail(`pickle is truncated (needs ${n} bytes at offset ${pos}, file is ${bytes.length})`);
    }
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = () => bytes[need(1)]!;
  const u16 = () => view.getUint16(need(2), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = () => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(bytes.length - pos)) fail(`pickle length ${v} exceeds the ${bytes.length - pos} bytes left`);
    return Number(v);
  };
  /** The `n` bytes an opcode's length field announces; `what` names the opcode in the error. */
  const take = (n: number, what: string) => {
    if (n < 0 || n > bytes.length - pos) {
      const kind = n < 0 ? "pickle" : "pickle is truncated:";
      fail(`${kind} ${what} at offset ${opPos} has length ${n}, expected 0 to ${bytes.length - pos} (the bytes left)`);
    }
    return bytes.subarray(need(n), pos);
  };
  const text = (b: Uint8Array, what: string): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail(`pickle ${what} at offset ${opPos} is not valid UTF-8`);
    }
  };
  // Integers longer than this are never part of a state dict (the legacy magic number is 10 bytes);
  // the cap also keeps signedLE's BigInt arithmetic from going quadratic on a huge LONG4.
  const MAX_LONG_BYTES = 16;
  const long = (n: number, what: string): number | bigint => {
    if (n > MAX_LONG_BYTES) {
      fail(`pickle ${what} at offset ${opPos} has ${n} bytes, expected at most ${MAX_LONG_BYTES}`);
    }
    return smallInt(signedLE(take(n, what)));
  };
  const line = (): string => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) fail(`pickle is truncated (unterminated line at offset ${pos})`);
    const s = latin1.decode(bytes.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail(`pickle stack underflow at offset ${pos - 1}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`pickle stack underflow at offset ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack.splice(0);
    const prev = metastack.pop();
    if (!prev) fail(`pickle has no MARK at offset ${pos - 1}`);
    stack.push(...prev!);
    return items;
  };
  const getMemo = (i: number): unknown => {
    if (!memo.has(i)) fail(`pickle memo key ${i} is undefined`);
    return memo.get(i);
  };
  const signedLE = (b: Uint8Array): bigint => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.length > 0 && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v;
  };
  const smallInt = (v: bigint): number | bigint =>
    v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  const setItems = (target: unknown, kv: unknown[]) => {
    if (target instanceof Map) {
      for (let i = 0; i + 1 < kv.length; i += 2) target.set(kv[i], kv[i + 1]);
    } else fail(`pickle SETITEM(S) on ${describe(target)}`);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target)) fail(`pickle APPEND(S) on ${describe(target)}`);
    (target as unknown[]).push(...items);
  };

  let opPos = pos;
  for (;;) {
    opPos = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(`pickle protocol is newer than 5`);
        break;
      case 0x95: // FRAME: a length prefix only, but it must fit in what is left
        u64();
        break;
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        metastack.push(stack.splice(0));
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
      case 0x29: // EMPTY_TUPLE
      case 0x8f: // EMPTY_SET (a set as a list: only membership-free uses in state dicts)
        stack.push([]);
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x91: // FROZENSET
      case 0x74: // TUPLE
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x64: { // DICT
        const kv = popMark(), d = new Map();
        setItems(d, kv);
        stack.push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(text(take(u32(), "BINUNICODE"), "BINUNICODE"));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(take(u8(), "SHORT_BINUNICODE"), "SHORT_BINUNICODE"));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(take(u64(), "BINUNICODE8"), "BINUNICODE8"));
        break;
      case 0x54: // BINSTRING (Python 2 str): the length is signed, so a negative one must be refused
        stack.push(latin1.decode(take(view.getInt32(need(4), true), "BINSTRING")));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(take(u8(), "SHORT_BINSTRING")));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32(), "BINBYTES").slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8(), "SHORT_BINBYTES").slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64(), "BINBYTES8").slice());
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(u8(), "LONG1"));
        break;
      case 0x8b: // LONG4
        stack.push(long(u32(), "LONG4"));
        break;
      case 0x49: { // INT (text): also encodes True/False as 01/00
        const s = line();
        stack.push(s === "01" ? true : s === "00" ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(smallInt(BigInt(line().replace(/L$/, ""))));
        break;
      case 0x47: // BINFLOAT: big-endian double
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number.parseFloat(line()));
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number.parseInt(line(), 10), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(getMemo(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(getMemo(u32()));
        break;
      case 0x67: // GET (text)
        stack.push(getMemo(Number.parseInt(line(), 10)));
        break;
      case 0x63: { // GLOBAL: "module\nname\n"
        const module = line(), name = line();
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail(`pickle STACK_GLOBAL needs two strings`);
        stack.push(new PyGlobal(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        stack.push(callGlobal(fn, args, ctx));
        break;
      }
      case 0x81: { // NEWOBJ: cls.__new__(cls, *args)
        const args = pop(), cls = pop();
        stack.push(callGlobal(cls, args, ctx));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        pop(); // kwargs
        const args = pop(), cls = pop();
        stack.push(callGlobal(cls, args, ctx));
        break;
      }
      case 0x62: { // BUILD: obj.__setstate__(state). OrderedDict's `_metadata` and tensor hooks are ignored.
        pop(); // the state
        const obj = top();
        if (!(obj instanceof Map || obj instanceof TensorRef)) fail(`pickle BUILD on ${describe(obj)}`);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(ctx.persistentLoad(pop()));
        break;
      case 0x50: // PERSID (text)
        stack.push(ctx.persistentLoad(line()));
        break;
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")} at offset ${opPos}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Persistent ids and tensor materialisation

/** Parse a storage persistent id: ('storage', storage_type, key, location, numel[, view_metadata]). */
function parseStoragePid(pid: unknown, ctx: PickleContext): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) {
    throw new Error(`Cannot read ${ctx.file}: unsupported persistent id ${describe(pid)}`);
  }
  const [, type, key, , numelRaw, viewMeta] = pid;
  if (!(type instanceof PyGlobal)) {
    throw new Error(`Cannot read ${ctx.file}: storage type ${describe(type)} is not a class`);
  }
  const dtype = type.module === "torch" ? STORAGE_DTYPES[type.name] : undefined;
  if (!dtype) throw new Error(`Cannot read ${ctx.file}: unsupported storage type ${type.full}`);
  const numel = asInt(numelRaw, "storage size", ctx);
  if (viewMeta !== undefined && viewMeta !== null) {
    // Very old torch: (view_key, offset, view_size) of the root storage `key`.
    const [, viewOffset] = Array.isArray(viewMeta) ? viewMeta : [];
    return new StorageRef(String(key), dtype, numel, asInt(viewOffset, "storage view offset", ctx));
  }
  return new StorageRef(String(key), dtype, numel);
}

/** Where each storage's bytes are: byte offset of element 0 and element count. */
type StorageLocator = (ref: StorageRef) => { offset: number; count: number };

/**
 * Check a view against its storage of `count` elements before anything is allocated; returns the
 * view's element count. Sizes, strides and the offset must be non-negative, the largest element index
 * the view touches must lie inside the storage, and the view may not have more elements than the
 * storage: only stride-0 (expanded) views could, and they would let a tiny file demand any amount of
 * memory. All arithmetic stays far below 2^53 because each step is bounded by `count` first.
 */
function checkView(t: TensorRef, count: number, fail: (msg: string) => never): number {
  const desc = `view (offset ${t.offset}, size [${t.shape}], stride [${t.stride}])`;
  if (t.shape.some((d) => d < 0) || t.stride.some((d) => d < 0) || t.offset < 0) {
    fail(`${desc} has a negative size, stride or offset`);
  }
  const base = t.storage.elemOffset + t.offset;
  let numel = 1;
  for (const d of t.shape) {
    numel *= d;
    if (numel > count) fail(`${desc} has more elements than its storage of ${count}`);
  }
  if (numel === 0) return 0;
  let last = base;
  for (let i = 0; i < t.shape.length; i++) {
    last += (t.shape[i]! - 1) * t.stride[i]!;
    if (last >= count) fail(`${desc} exceeds its storage of ${count}`);
  }
  if (last >= count) fail(`${desc} exceeds its storage of ${count}`);
  return numel;
}

/** Gather a strided view into a contiguous array. */
function materialise(
  bytes: Uint8Array,
  t: TensorRef,
  opts: { name: string; locate: StorageLocator; file: string; cache: Map<string, Float32Array | Int32Array> },
): ReadTensor {
  const { name, file } = opts;
  const s = t.storage;
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: tensor "${name}": ${msg}`);
  };
  if (t.shape.length !== t.stride.length) fail(`size [${t.shape}] and stride [${t.stride}] differ in rank`);
  const { offset, count } = opts.locate(s);
  const numel = checkView(t, count, fail);
  const base = s.elemOffset + t.offset;
  let store = opts.cache.get(`${s.key}/${s.dtype}`);
  if (!store) {
    store = decodeElements(bytes, { dtype: s.dtype, offset, count, what: `${file} storage ${s.key}` });
    opts.cache.set(`${s.key}/${s.dtype}`, store);
  }
  const out = store instanceof Float32Array ? new Float32Array(numel) : new Int32Array(numel);
  // Contiguous (row-major) strides: one copy.
  let contiguous = true;
  for (let i = t.shape.length - 1, expect = 1; i >= 0; i--) {
    if (t.shape[i]! !== 1 && t.stride[i]! !== expect) contiguous = false;
    expect *= t.shape[i]!;
  }
  if (contiguous) out.set(store.subarray(base, base + numel));
  else {
    // Walk the index space in row-major order with an odometer.
    const rank = t.shape.length, idx = new Array<number>(rank).fill(0);
    let src = base;
    for (let i = 0; i < numel; i++) {
      out[i] = store[src]!;
      for (let d = rank - 1; d >= 0; d--) {
        idx[d]!++;
        src += t.stride[d]!;
        if (idx[d]! < t.shape[d]!) break;
        src -= t.stride[d]! * t.shape[d]!;
        idx[d] = 0;
      }
    }
  }
  return { dtype: s.dtype, shape: [...t.shape], data: out };
}

// ---------------------------------------------------------------------------------------------------
// The two container formats

function readZipFormat(bytes: Uint8Array, file: string): Map<string, ReadTensor> {
  const entries = readZipDirectory(bytes, file);
  // The archive's top folder is named after the file that was saved: find it through data.pkl.
  const pkl = [...entries.keys()].filter((n) => n === "data.pkl" || n.endsWith("/data.pkl"))
    .sort((a, b) => a.length - b.length)[0];
  if (pkl === undefined) throw new Error(`Cannot read ${file}: zip archive has no data.pkl (not a torch checkpoint)`);
  const prefix = pkl.slice(0, pkl.length - "data.pkl".length);
  const order = entries.get(`${prefix}byteorder`);
  if (order) {
    const s = new TextDecoder().decode(readZipEntry(bytes, order, file)).trim();
    if (s !== "little") throw new Error(`Cannot read ${file}: byteorder is "${s}", only little-endian is supported`);
  }
  const ctx: PickleContext = { file, persistentLoad: (pid) => parseStoragePid(pid, ctx) };
  const { value } = unpickle(readZipEntry(bytes, entries.get(pkl)!, file), 0, ctx);

  // Storage bytes, located lazily: each data/<key> is decoded only when a tensor needs it.
  const blobs = new Map<string, Uint8Array>();
  const storageBytes = (ref: StorageRef): Uint8Array => {
    let b = blobs.get(ref.key);
    if (!b) {
      const e = entries.get(`${prefix}data/${ref.key}`);
      if (!e) throw new Error(`Cannot read ${file}: storage ${ref.key} (${prefix}data/${ref.key}) is missing`);
      b = readZipEntry(bytes, e, file);
      blobs.set(ref.key, b);
    }
    return b;
  };
  // materialise() decodes from one byte array; give it each storage's own bytes through a per-storage view.
  const out = new Map<string, ReadTensor>(), cache = new Map<string, Float32Array | Int32Array>();
  const root = value instanceof Map ? value : undefined;
  if (!root) throw new Error(`Cannot read ${file}: expected a state dict, found ${describe(value)}`);
  for (const [name, t] of collectRefs(root)) {
    const blob = storageBytes(t.storage), size = dtypeSize(t.storage.dtype)!;
    const count = t.storage.numel;
    if (blob.length < count * size) {
      throw new Error(
        `Cannot read ${file}: storage ${t.storage.key} has ${blob.length} bytes, expected ${
          count * size
        } (${count} × ${t.storage.dtype})`,
      );
    }
    out.set(name, materialise(blob, t, { name, file, cache, locate: () => ({ offset: 0, count }) }));
  }
  return out;
}

/** The (name, tensor) pairs of a state dict, unwrapping a `{"state_dict": …}` / `{"model": …}` wrapper. */
function collectRefs(root: Map<unknown, unknown>): [string, TensorRef][] {
  let dict = root;
  if (![...dict.values()].some((v) => v instanceof TensorRef)) {
    const inner = dict.get("state_dict") ?? dict.get("model");
    if (inner instanceof Map) dict = inner;
  }
  const out: [string, TensorRef][] = [];
  for (const [k, v] of dict) if (typeof k === "string" && v instanceof TensorRef) out.push([k, v]);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Legacy stream container

function readLegacyFormat(bytes: Uint8Array, file: string): Map<string, ReadTensor> {
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: ${msg}`);
  };
  const plain: PickleContext = {
    file,
    persistentLoad: () => fail("unexpected persistent id in the legacy header"),
  };
  const magic = unpickle(bytes, 0, plain);
  if (magic.value !== LEGACY_MAGIC) fail("not a torch checkpoint (neither a zip archive nor the legacy magic number)");
  const proto = unpickle(bytes, magic.end, plain);
  if (proto.value !== 1001) fail(`legacy protocol version ${describe(proto.value)} is not supported (expected 1001)`);
  const sysInfo = unpickle(bytes, proto.end, plain);
  if (sysInfo.value instanceof Map && sysInfo.value.get("little_endian") === false) {
    fail("the checkpoint was saved big-endian, only little-endian is supported");
  }
  const ctx: PickleContext = { file, persistentLoad: (pid) => parseStoragePid(pid, ctx) };
  const state = unpickle(bytes, sysInfo.end, ctx);
  const keys = unpickle(bytes, state.end, plain);
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === "string")) {
    fail("the storage key list is not a list of strings");
  }

  // Each storage in key order: int64 element count, then the elements. Record where each one's data is.
  const refs = collectRefs(
    state.value instanceof Map ? state.value : fail(`expected a state dict, found ${describe(state.value)}`),
  );
  const dtypeOf = new Map<string, string>();
  for (const [, t] of refs) dtypeOf.set(t.storage.key, t.storage.dtype);
  const where = new Map<string, { offset: number; count: number }>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = keys.end;
  for (const key of keys.value as string[]) {
    if (p + 8 > bytes.length) fail(`file is truncated: storage ${key} is missing (file ends at byte ${bytes.length})`);
    const count = view.getBigInt64(p, true);
    // The element size comes from the storage's type; a storage no tensor uses still has to be skipped,
    // which needs its type: every storage in the list is referenced by some tensor in practice.
    const dtype = dtypeOf.get(key);
    if (dtype === undefined) fail(`storage ${key} is listed but no tensor uses it, so its size is unknown`);
    const size = BigInt(dtypeSize(dtype!)!);
    const end = BigInt(p + 8) + count * size;
    if (count < 0n || end > BigInt(bytes.length)) {
      fail(
        `file is truncated: storage ${key} needs ${count * size} bytes at offset ${
          p + 8
        }, file is ${bytes.length} bytes`,
      );
    }
    where.set(key, { offset: p + 8, count: Number(count) });
    p = Number(end);
  }
  const out = new Map<string, ReadTensor>(), cache = new Map<string, Float32Array | Int32Array>();
  for (const [name, t] of refs) {
    const loc = where.get(t.storage.key);
    if (!loc) fail(`storage ${t.storage.key} of tensor "${name}" is not in the storage list`);
    out.set(name, materialise(bytes, t, { name, file, cache, locate: () => loc! }));
  }
  return out;
}

/**
 * Read a `torch.save`d state dict (`pytorch_model.bin`), zip or legacy format. Returns the tensors by
 * name in state-dict order, upcast like {@link readSafetensors}: float storages → Float32Array, integer
 * and bool storages → Int32Array. `dtype` is the stored dtype in safetensors spelling (F32, F16, I64, …).
 * `file` names the file in errors.
 */
export function readTorchBin(bytes: Uint8Array, file: string): Map<string, ReadTensor> {
  try {
    return readTorchBinUnchecked(bytes, file);
  } catch (e) {
    // The readers name the file in their own errors; anything else that escapes (a RangeError from a
    // DataView, a SyntaxError from a text LONG) gets the file name here.
    const msg = (e as Error).message ?? String(e);
    if (msg.includes(file)) throw e;
    throw new Error(`Cannot read ${file}: ${msg}`, { cause: e });
  }
}

function readTorchBinUnchecked(bytes: Uint8Array, file: string): Map<string, ReadTensor> {
  if (bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) {
    return readZipFormat(bytes, file);
  }
  if (bytes.length >= 2 && bytes[0] === 0x80) return readLegacyFormat(bytes, file);
  throw new Error(`Cannot read ${file}: not a torch checkpoint (neither a zip archive nor a pickle stream)`);
}
