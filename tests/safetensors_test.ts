import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.ts";

const FIXTURE = "tests/fixtures/tiny-gpt2-zh/model/model.safetensors";

/** Build a safetensors file from a header object and a raw body (no validation: for corrupt inputs). */
function build(header: unknown, body: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

/** Write `bytes` to a fresh temp file and read it back through the reader, as a model dir load would. */
async function readViaTemp(bytes: Uint8Array, name = "model.safetensors") {
  const dir = await mkdtemp(join(tmpdir(), "st-test-"));
  const path = join(dir, name);
  try {
    await writeFile(path, bytes);
    return readSafetensors(new Uint8Array(await readFile(path)), path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function f32Body(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

describe("safetensors write/read", () => {
  test("round trip of F32 and I32 tensors is exact, names sorted, header padded to 8 bytes", () => {
    const a = new Float32Array([1.5, -0, NaN, Infinity, 3e-41, -7]);
    const b = new Int32Array([-2147483648, 0, 2147483647]);
    const bytes = writeSafetensors({ "z.weight": { shape: [2, 3], data: a }, "a.ids": { shape: [3], data: b } }, {
      note: "x",
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(header.__metadata__).toEqual({ format: "pt", note: "x" });
    expect(Object.keys(header).filter((k) => k !== "__metadata__")).toEqual(["a.ids", "z.weight"]);
    const back = readSafetensors(bytes, "rt.safetensors");
    expect(back.get("z.weight")!.dtype).toBe("F32");
    expect(back.get("z.weight")!.shape).toEqual([2, 3]);
    // Bit-exact (tolerance 0): compare the raw bits, so NaN and -0 count too.
    expect([...new Uint32Array(back.get("z.weight")!.data.buffer)]).toEqual([...new Uint32Array(a.buffer)]);
    expect(back.get("a.ids")!.dtype).toBe("I32");
    expect([...back.get("a.ids")!.data]).toEqual([...b]);
  });

  test("a Map and an empty tensor set are accepted", () => {
    const m = new Map([["x", { shape: [0], data: new Float32Array(0) }]]);
    expect(readSafetensors(writeSafetensors(m), "m").get("x")!.shape).toEqual([0]);
    expect(readSafetensors(writeSafetensors({}), "e").size).toBe(0);
  });

  test("writing a tensor whose data does not match its shape fails", () => {
    expect(() => writeSafetensors({ x: { shape: [2, 2], data: new Float32Array(3) } })).toThrow(
      'Cannot write safetensors: tensor "x" has 3 elements for shape [2,2]',
    );
  });

  test("reads the fixture model (28 F32 tensors)", async () => {
    const t = readSafetensors(new Uint8Array(await readFile(FIXTURE)), FIXTURE);
    expect(t.size).toBe(28);
    expect(t.get("transformer.wte.weight")!.shape).toEqual([343, 64]);
    expect([...t.values()].every((x) => x.dtype === "F32" && x.data instanceof Float32Array)).toBe(true);
  });
  test("a Node Buffer (what readFile returns) reads the same as a plain Uint8Array", async () => {
    // Buffer.slice() is a view, not a copy: decoding must not take `.buffer` of it (a regression test).
    const buf = await readFile(FIXTURE);
    const a = readSafetensors(buf, FIXTURE), b = readSafetensors(new Uint8Array(buf), FIXTURE);
    for (const [name, t] of a) expect(t.data).toEqual(b.get(name)!.data);
  });
});

describe("safetensors dtypes", () => {
  test("F16 decodes exactly, subnormals and specials included", () => {
    // 0x3c00 = 1, 0xc000 = -2, 0x7bff = 65504 (max), 0x0001 = 2^-24 (smallest subnormal),
    // 0x8000 = -0, 0x7c00 = inf, 0x7e00 = NaN, 0x3555 = 0.333251953125. All exactly representable in f32.
    const h = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00, 0x3555]);
    const t = readSafetensors(
      build({ h: { dtype: "F16", shape: [8], data_offsets: [0, 16] } }, new Uint8Array(h.buffer)),
      "f16",
    ).get("h")!;
    expect(t.dtype).toBe("F16");
    const d = t.data as Float32Array;
    expect([d[0], d[1], d[2], d[3], d[5], d[7]]).toEqual([1, -2, 65504, 2 ** -24, Infinity, 0.333251953125]);
    expect(Object.is(d[4], -0)).toBe(true);
    expect(d[6]).toBeNaN();
  });

  test("BF16 is the top half of a float32", () => {
    const f = new Float32Array([1.5, -1.75 * 2 ** 35, 2 ** -130]);
    const bits = new Uint32Array(f.buffer), top = new Uint16Array(3).map((_, i) => bits[i]! >>> 16);
    const d = readSafetensors(
      build({ b: { dtype: "BF16", shape: [3], data_offsets: [0, 6] } }, new Uint8Array(top.buffer)),
      "bf",
    )
      .get("b")!.data;
    // The chosen values have zero low mantissa bits, so the decode is exact (tolerance 0).
    expect([...d]).toEqual([...f]);
  });

  test("I64, BOOL and U8 become Int32Array; an I64 beyond int32 fails", () => {
    const i64 = new BigInt64Array([-5n, 2147483647n]);
    const body = new Uint8Array(16 + 3 + 1);
    body.set(new Uint8Array(i64.buffer), 0);
    body.set([1, 0, 2], 16);
    body.set([255], 19);
    const t = readSafetensors(
      build({
        i: { dtype: "I64", shape: [2], data_offsets: [0, 16] },
        b: { dtype: "BOOL", shape: [3], data_offsets: [16, 19] },
        u: { dtype: "U8", shape: [1], data_offsets: [19, 20] },
      }, body),
      "ints",
    );
    expect([...t.get("i")!.data]).toEqual([-5, 2147483647]);
    expect(t.get("b")!.data).toBeInstanceOf(Int32Array);
    expect([...t.get("b")!.data]).toEqual([1, 0, 1]);
    expect([...t.get("u")!.data]).toEqual([255]);
    const big = new BigInt64Array([2n ** 40n]);
    expect(() =>
      readSafetensors(
        build({ i: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(big.buffer)),
        "big",
      )
    )
      .toThrow("I64 value 1099511627776 at element 0 does not fit in int32");
  });
});

describe("safetensors corrupt input", () => {
  test("a file shorter than the length prefix", async () => {
    await expect(readViaTemp(new Uint8Array(5))).rejects.toThrow(/model\.safetensors: file is 5 bytes, too short/);
  });

  test("a truncated file: header length exceeds the file size", async () => {
    const full = new Uint8Array(await readFile(FIXTURE));
    const n = Number(new DataView(full.buffer).getBigUint64(0, true));
    const cut = full.slice(0, 1234);
    expect(n > 1234).toBe(true);
    await expect(readViaTemp(cut)).rejects.toThrow(
      new RegExp(`Cannot read .*model\\.safetensors: header length ${n} exceeds file size 1234`),
    );
  });

  test("a truncated body: the last tensor's offsets are out of range", async () => {
    const full = new Uint8Array(await readFile(FIXTURE));
    await expect(readViaTemp(full.slice(0, full.length - 100))).rejects.toThrow(
      /data_offsets \[\d+, \d+\] are out of range/,
    );
  });

  test("corrupted header JSON", async () => {
    const full = new Uint8Array(await readFile(FIXTURE));
    full[8 + 20] = 0x22; // a stray '"' inside the header
    await expect(readViaTemp(full)).rejects.toThrow(/model\.safetensors: header is not valid JSON/);
  });

  test("a header that is JSON but not an object", async () => {
    await expect(readViaTemp(build([1, 2], new Uint8Array(0)))).rejects.toThrow("header is not a JSON object");
  });

  test("offsets out of range", async () => {
    const bytes = build({ w: { dtype: "F32", shape: [250], data_offsets: [0, 1000] } }, f32Body([1, 2, 3, 4]));
    await expect(readViaTemp(bytes)).rejects.toThrow(
      'tensor "w": data_offsets [0, 1000] are out of range (data is 16 bytes)',
    );
  });

  test("overlapping tensors", async () => {
    const bytes = build({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, f32Body([1, 2, 3]));
    await expect(readViaTemp(bytes)).rejects.toThrow('tensor "b": data_offsets [4, 12] overlap the previous tensor');
  });

  test("a gap between tensors, and bytes left over at the end", async () => {
    const gap = build({
      a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
      b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    }, f32Body([1, 2, 3]));
    await expect(readViaTemp(gap)).rejects.toThrow('tensor "b": data_offsets [8, 12] leave a gap after byte 4');
    const tail = build({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, f32Body([1, 2]));
    await expect(readViaTemp(tail)).rejects.toThrow("tensors cover 4 bytes of data but the file has 8");
  });

  test("a byte length that does not match the shape", async () => {
    const bytes = build({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32Body([1, 2]));
    await expect(readViaTemp(bytes)).rejects.toThrow('tensor "a": 8 bytes for shape [3] F32, expected 12 (3 × 4)');
  });

  test("an unknown dtype and a malformed shape", async () => {
    const f8 = build({ a: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2));
    await expect(readViaTemp(f8)).rejects.toThrow('tensor "a": unsupported dtype "F8_E4M3"');
    const neg = build({ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, f32Body([1]));
    await expect(readViaTemp(neg)).rejects.toThrow('tensor "a": shape [-1] is not a list of non-negative integers');
  });
});
