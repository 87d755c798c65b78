/**
 * safetensors read and write.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {…}}`, offsets relative to the body), then the body. The
 * reader validates all of it the way the reference Rust implementation does (offsets in range, the
 * tensors tiling the body without holes or overlaps, byte lengths matching shapes) and upcasts: F64,
 * F32, F16, BF16 → Float32Array; I64 (checked to fit), I32, I16, I8, U8, BOOL → Int32Array. The writer
 * writes F32 and I32.
 * @module
 */

/** A tensor as the readers return it. `dtype` is the stored dtype (safetensors spelling: F32, F16, I64, …). */
export interface ReadTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** A tensor to write. Float32Array is written as F32, Int32Array as I32. */
export interface WriteTensor {
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Bytes per element of the dtypes the reader understands. */
const DTYPE_SIZES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The byte size of one element of `dtype`, or undefined for a dtype the readers do not support. */
export function dtypeSize(dtype: string): number | undefined {
  return Object.hasOwn(DTYPE_SIZES, dtype) ? DTYPE_SIZES[dtype] : undefined;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let halfTable: Float32Array | undefined;

/** float16 bits → float32 value, for all 65536 patterns (built on first use, 256 KiB). */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24; // zero and subnormals
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return (halfTable = t);
}

/**
 * Decode `count` little-endian elements of `dtype` starting at `bytes[offset]` to a Float32Array (float
 * dtypes) or an Int32Array (integer and bool dtypes). `what` names the tensor in errors (I64 overflow).
 * Shared with the pytorch_model.bin reader.
 */
export function decodeElements(
  bytes: Uint8Array,
  spec: { dtype: string; offset: number; count: number; what: string },
): Float32Array | Int32Array {
  const { dtype, offset, count, what } = spec;
  const size = dtypeSize(dtype);
  if (size === undefined) throw new Error(`Cannot decode ${what}: unsupported dtype ${dtype}`);
  if (!LITTLE_ENDIAN) throw new Error(`Cannot decode ${what}: big-endian hosts are not supported`);
  // Copy the bytes into a fresh, aligned buffer so the typed-array views below are legal. (Not
  // `bytes.slice()`: on a Node Buffer, which readFile returns under Bun and Deno, slice is a view.)
  const raw = Uint8Array.prototype.slice.call(bytes, offset, offset + count * size).buffer;
  switch (dtype) {
    case "F32":
      return new Float32Array(raw);
    case "F64":
      return Float32Array.from(new Float64Array(raw));
    case "F16": {
      const table = halfToFloatTable(), src = new Uint16Array(raw), out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case "BF16": {
      // bfloat16 is the top half of a float32.
      const src = new Uint16Array(raw), out = new Float32Array(count), bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "I32":
      return new Int32Array(raw);
    case "I64": {
      const src = new BigInt64Array(raw), out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = src[i]!;
        if (v < -2147483648n || v > 2147483647n) {
          throw new Error(`Cannot decode ${what}: I64 value ${v} at element ${i} does not fit in int32`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    case "I16":
      return Int32Array.from(new Int16Array(raw));
    case "I8":
      return Int32Array.from(new Int8Array(raw));
    case "U8":
      return Int32Array.from(new Uint8Array(raw));
    case "BOOL": {
      const src = new Uint8Array(raw), out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i] ? 1 : 0;
      return out;
    }
  }
  throw new Error(`Cannot decode ${what}: unsupported dtype ${dtype}`);
}

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0);
}

/**
 * Read a safetensors file. `file` names it in errors: `Cannot read model.safetensors: header length
 * 99999 exceeds file size 1234`. Returns the tensors by name, in header order.
 */
export function readSafetensors(bytes: Uint8Array, file: string): Map<string, ReadTensor> {
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: ${msg}`);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) fail(`header length ${n} exceeds file size ${bytes.length}`);
  const headerLen = Number(n), bodyStart = 8 + headerLen, bodyLen = bytes.length - bodyStart;

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, bodyStart)));
  } catch (e) {
    fail(`header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("header is not a JSON object");

  const entries: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    const info = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (typeof info !== "object" || info === null) fail(`tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offs } = info!;
    if (typeof dtype !== "string") fail(`tensor "${name}": missing dtype`);
    const size = dtypeSize(dtype as string);
    if (size === undefined) fail(`tensor "${name}": unsupported dtype ${JSON.stringify(dtype)}`);
    if (!isShape(shape)) {
      fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      fail(`tensor "${name}": data_offsets ${JSON.stringify(offs)} are not [begin, end] with 0 ≤ begin ≤ end`);
    }
    const [begin, end] = offs as [number, number];
    if (end > bodyLen) {
      fail(`tensor "${name}": data_offsets [${begin}, ${end}] are out of range (data is ${bodyLen} bytes)`);
    }
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== numel * size!) {
      fail(
        `tensor "${name}": ${end - begin} bytes for shape [${shape}] ${dtype}, expected ${
          numel * size!
        } (${numel} × ${size})`,
      );
    }
    entries.push({ name, dtype: dtype as string, shape: shape as number[], begin, end });
  }

  // The tensors must tile the body: sorted by offset, each starts where the previous ended, no trailing bytes.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of sorted) {
    if (e.begin !== expected) {
      fail(
        e.begin < expected
          ? `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (which ends at ${expected})`
          : `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${expected}`,
      );
    }
    expected = e.end;
  }
  if (expected !== bodyLen) fail(`tensors cover ${expected} bytes of data but the file has ${bodyLen}`);

  const out = new Map<string, ReadTensor>();
  for (const e of entries) {
    const size = dtypeSize(e.dtype)!;
    const data = decodeElements(bytes, {
      dtype: e.dtype,
      offset: bodyStart + e.begin,
      count: (e.end - e.begin) / size,
      what: `${file} tensor "${e.name}"`,
    });
    out.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return out;
}

/**
 * Serialise tensors to safetensors bytes: names sorted, Float32Array as F32 and Int32Array as I32, the
 * header padded with spaces to a multiple of 8 bytes, `__metadata__` = `{format: "pt", ...metadata}`
 * (transformers requires format "pt").
 */
export function writeSafetensors(
  tensors: Map<string, WriteTensor> | Record<string, WriteTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new Error(`Cannot write safetensors: "__metadata__" is not a valid tensor name`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (!isShape(t.shape) || numel !== t.data.length) {
      throw new Error(
        `Cannot write safetensors: tensor "${name}" has ${t.data.length} elements for shape [${t.shape}]`,
      );
    }
    const dtype = t.data instanceof Float32Array ? "F32" : "I32";
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(json.length + pad).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}
