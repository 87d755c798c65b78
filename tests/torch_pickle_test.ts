import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { readSafetensors } from "../src/io/safetensors.ts";
import { readTorchBin } from "../src/io/torch_pickle.ts";

const FIX = "tests/fixtures/tiny-gpt2-zh";
const ZIP = `${FIX}/model-bin/pytorch_model.bin`;
const LEGACY = `${FIX}/model-bin-legacy/pytorch_model.bin`;

async function bytesOf(path: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(path));
}

/** Write `bytes` to a temp file and read it back through the reader. */
async function readViaTemp(bytes: Uint8Array) {
  const dir = await mkdtemp(join(tmpdir(), "bin-test-")), path = join(dir, "pytorch_model.bin");
  try {
    await writeFile(path, bytes);
    return readTorchBin(await bytesOf(path), path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function bitsEqual(a: Float32Array | Int32Array, b: Float32Array | Int32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

// ---- A tiny pickle writer for hand-made checkpoints (protocol 2, the opcodes torch.save emits) ----

class Pickler {
  parts: number[] = [0x80, 2];
  op(...b: number[]): this {
    this.parts.push(...b);
    return this;
  }
  str(s: string): this {
    const u = new TextEncoder().encode(s);
    this.op(0x58, ...le32(u.length), ...u);
    return this;
  }
  int(n: number): this {
    return this.op(0x4a, ...le32(n));
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  ints(xs: number[]): this {
    this.op(0x28);
    for (const x of xs) this.int(x);
    return this.op(0x74);
  }
  bytes(): Uint8Array {
    return new Uint8Array([...this.parts, 0x2e]);
  }
}

function le32(n: number): number[] {
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
}

interface Spec {
  name: string;
  storageType: string;
  key: string;
  numel: number;
  offset: number;
  size: number[];
  stride: number[];
}

/** The state-dict pickle for `specs`; `legacy` adds the 6th (view metadata) field to each persistent id. */
function statePickle(specs: Spec[], legacy: boolean): Uint8Array {
  const p = new Pickler().op(0x7d, 0x28); // EMPTY_DICT, MARK
  for (const s of specs) {
    p.str(s.name).global("torch._utils", "_rebuild_tensor_v2").op(0x28); // MARK (args)
    p.op(0x28).str("storage").global("torch", s.storageType).str(s.key).str("cpu").int(s.numel);
    if (legacy) p.op(0x4e);
    p.op(0x74, 0x51); // TUPLE, BINPERSID
    p.int(s.offset).ints(s.size).ints(s.stride).op(0x89); // requires_grad False
    p.global("collections", "OrderedDict").op(0x29, 0x52); // OrderedDict()
    p.op(0x74, 0x52); // TUPLE, REDUCE
  }
  return p.op(0x75).bytes(); // SETITEMS
}

/** Storages of the hand-made checkpoint: raw little-endian bytes by key, with their storage types. */
function storages(): { key: string; type: string; numel: number; data: Uint8Array }[] {
  const f = new Float32Array(12).map((_, i) => i + 0.5);
  const h = new Uint16Array([0x3e00, 0xc000, 0x7bff, 0x0001]); // 1.5, -2, 65504, 2^-24
  const l = new BigInt64Array([1n, -3n, 2147483647n]);
  const b = new Uint8Array([1, 0, 1]);
  const bf = new Uint16Array([0x3fc0, 0xc040]); // 1.5, -3
  return [
    { key: "s0", type: "FloatStorage", numel: 12, data: new Uint8Array(f.buffer) },
    { key: "s1", type: "HalfStorage", numel: 4, data: new Uint8Array(h.buffer) },
    { key: "s2", type: "LongStorage", numel: 3, data: new Uint8Array(l.buffer) },
    { key: "s3", type: "BoolStorage", numel: 3, data: b },
    { key: "s4", type: "BFloat16Storage", numel: 2, data: new Uint8Array(bf.buffer) },
  ];
}

function specs(): Spec[] {
  const st = (key: string) => storages().find((s) => s.key === key)!;
  const t = (name: string, key: string, offset: number, size: number[], stride: number[]): Spec => ({
    name,
    storageType: st(key).type,
    key,
    numel: st(key).numel,
    offset,
    size,
    stride,
  });
  return [
    t("a", "s0", 0, [3, 4], [4, 1]), // contiguous
    t("aT", "s0", 0, [4, 3], [1, 4]), // a transposed view of the same storage
    t("sub", "s0", 5, [2, 2], [4, 1]), // an offset, row-strided window
    t("scalar", "s0", 2, [], []),
    t("bcast", "s0", 1, [2, 3], [0, 1]), // stride 0 (expand)
    t("h", "s1", 0, [4], [1]),
    t("l", "s2", 0, [3], [1]),
    t("b", "s3", 0, [3], [1]),
    t("bf", "s4", 0, [2], [1]),
  ];
}

/** A legacy-format checkpoint: magic, protocol, sys_info, state dict, key list, storages. */
function legacyCheckpoint(stateBytes = statePickle(specs(), true)): Uint8Array {
  const magic = new Uint8Array([0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
  const proto = new Pickler().op(0x4d, 0xe9, 0x03).bytes(); // BININT2 1001
  const sys = new Pickler().op(0x7d, 0x28).str("little_endian").op(0x88, 0x75).bytes();
  const keys = new Pickler().op(0x5d, 0x28);
  for (const s of storages()) keys.str(s.key);
  const parts = [magic, proto, sys, stateBytes, keys.op(0x65).bytes()];
  for (const s of storages()) {
    const n = new Uint8Array(8);
    new DataView(n.buffer).setBigInt64(0, BigInt(s.numel), true);
    parts.push(n, s.data);
  }
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A minimal zip writer (no CRC checking on our side, so CRC is written as 0). `deflate` picks method 8. */
function zip(files: { name: string; data: Uint8Array; deflate?: boolean }[]): Uint8Array {
  const local: Uint8Array[] = [], central: Uint8Array[] = [];
  let offset = 0;
  for (const f of files) {
    const name = new TextEncoder().encode(f.name);
    const body = f.deflate ? new Uint8Array(deflateRawSync(f.data)) : f.data;
    const h = new Uint8Array(30 + name.length + 3); // 3 bytes of extra padding, like torch's alignment
    const v = new DataView(h.buffer);
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(8, f.deflate ? 8 : 0, true);
    v.setUint32(18, body.length, true);
    v.setUint32(22, f.data.length, true);
    v.setUint16(26, name.length, true);
    v.setUint16(28, 3, true);
    h.set(name, 30);
    const c = new Uint8Array(46 + name.length), cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(10, f.deflate ? 8 : 0, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, f.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    c.set(name, 46);
    local.push(h, body);
    central.push(c);
    offset += h.length + body.length;
  }
  const cd = concat(central), e = new Uint8Array(22), ev = new DataView(e.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, files.length, true);
  ev.setUint16(10, files.length, true);
  ev.setUint32(12, cd.length, true);
  ev.setUint32(16, offset, true);
  return concat([...local, cd, e]);
}

function zipCheckpoint(top = "my_ckpt"): Uint8Array {
  return zip([
    { name: `${top}/data.pkl`, data: statePickle(specs(), false) },
    { name: `${top}/byteorder`, data: new TextEncoder().encode("little") },
    ...storages().map((s) => ({ name: `${top}/data/${s.key}`, data: s.data })),
    { name: `${top}/version`, data: new TextEncoder().encode("3\n") },
  ]);
}

function checkHandMade(t: Map<string, { dtype: string; shape: number[]; data: Float32Array | Int32Array }>): void {
  // Exact values (tolerance 0): every element is a copy or an exact upcast of a stored value.
  const s0 = Array.from({ length: 12 }, (_, i) => i + 0.5);
  expect([...t.get("a")!.data]).toEqual(s0);
  expect(t.get("aT")!.shape).toEqual([4, 3]);
  expect([...t.get("aT")!.data]).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11].map((i) => i + 0.5));
  expect([...t.get("sub")!.data]).toEqual([5.5, 6.5, 9.5, 10.5]);
  expect(t.get("scalar")!.shape).toEqual([]);
  expect([...t.get("scalar")!.data]).toEqual([2.5]);
  expect([...t.get("bcast")!.data]).toEqual([1.5, 2.5, 3.5, 1.5, 2.5, 3.5]);
  expect(t.get("h")!.dtype).toBe("F16");
  expect([...t.get("h")!.data]).toEqual([1.5, -2, 65504, 2 ** -24]);
  expect(t.get("l")!.dtype).toBe("I64");
  expect(t.get("l")!.data).toBeInstanceOf(Int32Array);
  expect([...t.get("l")!.data]).toEqual([1, -3, 2147483647]);
  expect([...t.get("b")!.data]).toEqual([1, 0, 1]);
  expect([...t.get("bf")!.data]).toEqual([1.5, -3]);
  // Views never alias each other or the storage.
  expect(t.get("a")!.data.buffer === t.get("aT")!.data.buffer).toBe(false);
}

describe("pytorch_model.bin fixtures", () => {
  test("zip and legacy formats hold the same weights as model.safetensors, bit for bit", async () => {
    const ref = readSafetensors(await bytesOf(`${FIX}/model/model.safetensors`), "model.safetensors");
    for (const path of [ZIP, LEGACY]) {
      const t = readTorchBin(await bytesOf(path), path);
      for (const [name, r] of ref) {
        const got = t.get(name);
        expect(got?.shape).toEqual(r.shape);
        // Tolerance 0: the .bin files were written from these exact float32 values.
        expect(bitsEqual(got!.data, r.data)).toBe(true);
      }
      // The tied head shares wte's storage; it comes out as its own copy with the same values.
      expect(bitsEqual(t.get("lm_head.weight")!.data, r(ref, "transformer.wte.weight"))).toBe(true);
      expect(t.get("lm_head.weight")!.data === t.get("transformer.wte.weight")!.data).toBe(false);
      // The legacy buffers: a [1,1,P,P] lower-triangular mask and the scalar -1e4.
      const mask = t.get("transformer.h.1.attn.bias")!;
      expect(mask.shape).toEqual([1, 1, 256, 256]);
      expect([mask.data[0], mask.data[1], mask.data[256], mask.data[257], mask.data[256 * 256 - 1]]).toEqual([
        1,
        0,
        1,
        1,
        1,
      ]);
      expect(t.get("transformer.h.0.attn.masked_bias")!.shape).toEqual([]);
      expect([...t.get("transformer.h.0.attn.masked_bias")!.data]).toEqual([-10000]);
      expect(t.size).toBe(ref.size + 5);
    }
  });
});

function r(m: Map<string, { data: Float32Array | Int32Array }>, k: string) {
  return m.get(k)!.data;
}

describe("pytorch_model.bin hand-made checkpoints", () => {
  test("legacy stream: strides, offsets, shared storages, F16/BF16/I64/BOOL storages", async () => {
    checkHandMade(await readViaTemp(legacyCheckpoint()));
  });

  test("zip: any top folder name", async () => {
    checkHandMade(await readViaTemp(zipCheckpoint("some_other_name")));
  });
});

describe("pytorch_model.bin corrupt input", () => {
  test("a truncated zip checkpoint", async () => {
    const full = await bytesOf(ZIP);
    await expect(readViaTemp(full.slice(0, Math.floor(full.length / 2)))).rejects.toThrow(
      /pytorch_model\.bin: zip end-of-central-directory record not found \(the file is truncated or not a zip archive\)/,
    );
  });

  test("a zip entry whose local header offset is wrong", async () => {
    const full = zipCheckpoint();
    // Point the central directory entry of data/s0 at bytes that are not a local header.
    const v = new DataView(full.buffer);
    const name = new TextEncoder().encode("my_ckpt/data/s0");
    for (let p = full.length - 22; p >= 0; p--) {
      if (
        v.getUint32(p, true) === 0x02014b50 &&
        full.subarray(p + 46, p + 46 + name.length).every((c, i) => c === name[i])
      ) {
        v.setUint32(p + 42, full.length - 40, true);
        break;
      }
    }
    await expect(readViaTemp(full)).rejects.toThrow(/zip entry my_ckpt\/data\/s0: local header is missing or corrupt/);
  });

  test("a truncated legacy checkpoint: in the storages, and in the pickles", async () => {
    const full = await bytesOf(LEGACY);
    await expect(readViaTemp(full.slice(0, full.length - 1000))).rejects.toThrow(
      /pytorch_model\.bin: file is truncated: storage \d+ needs \d+ bytes at offset \d+, file is \d+ bytes/,
    );
    await expect(readViaTemp(full.slice(0, 2000))).rejects.toThrow(/pytorch_model\.bin: pickle is truncated/);
  });

  test("an unsupported global is named", async () => {
    const evil = new Pickler().global("os", "system").op(0x28).str("echo hi").op(0x74, 0x52).bytes();
    await expect(readViaTemp(legacyCheckpoint(evil))).rejects.toThrow("unsupported pickle global os.system");
  });

  test("an unsupported storage type is named", async () => {
    const s = specs().map((x) => (x.name === "a" ? { ...x, storageType: "ComplexFloatStorage" } : x));
    await expect(readViaTemp(legacyCheckpoint(statePickle(s, true)))).rejects.toThrow(
      "unsupported storage type torch.ComplexFloatStorage",
    );
  });

  test("a view reaching past its storage", async () => {
    const s = specs().map((x) => (x.name === "sub" ? { ...x, offset: 10 } : x));
    await expect(readViaTemp(legacyCheckpoint(statePickle(s, true)))).rejects.toThrow(
      'tensor "sub": view (offset 10, size [2,2], stride [4,1]) exceeds its storage of 12',
    );
  });

  test("neither zip nor pickle", async () => {
    await expect(readViaTemp(new TextEncoder().encode("version https://git-lfs.github.com/spec/v1\n"))).rejects.toThrow(
      /pytorch_model\.bin: not a torch checkpoint/,
    );
  });
});

/** A legacy checkpoint whose state-dict pickle is `state` (the header pickles are well formed). */
const legacyWith = (state: number[]) => legacyCheckpoint(new Uint8Array([0x80, 2, ...state, 0x2e]));

/** Expect `fn` to reject within `ms` milliseconds with a message matching `re`. */
async function rejectsFast(p: Promise<unknown>, re: RegExp, ms = 1000): Promise<void> {
  const t0 = performance.now();
  await expect(p).rejects.toThrow(re);
  expect(performance.now() - t0).toBeLessThan(ms);
}

describe("pytorch_model.bin hostile input: fails fast, bounded, naming the file", () => {
  test("a negative BINSTRING length", async () => {
    await rejectsFast(
      readViaTemp(legacyWith([0x54, ...le32(-100)])),
      /pytorch_model\.bin: pickle BINSTRING at offset \d+ has length -100, expected 0 to \d+/,
    );
  });

  test("oversize lengths in every length-carrying opcode", async () => {
    const big = le32(0x7fffff00);
    const big8 = [0, 0, 0, 0x10, 0, 0, 0, 0];
    const cases: [number[], string][] = [
      [[0x58, ...big], "BINUNICODE"],
      [[0x42, ...big], "BINBYTES"],
      [[0x8c, 200], "SHORT_BINUNICODE"],
      [[0x55, 200], "SHORT_BINSTRING"],
      [[0x43, 200], "SHORT_BINBYTES"],
      [[0x8b, ...big], "LONG4"],
    ];
    for (const [ops, name] of cases) {
      await rejectsFast(
        readViaTemp(legacyWith(ops)),
        new RegExp(`pytorch_model\\.bin: pickle (is truncated: )?${name} at offset`),
      );
    }
    for (const op of [0x8d, 0x8e, 0x95]) { // BINUNICODE8, BINBYTES8, FRAME
      await rejectsFast(
        readViaTemp(legacyWith([op, ...big8])),
        /pytorch_model\.bin: pickle length \d+ exceeds the \d+ bytes left/,
      );
    }
    // A long LONG1/LONG4 is refused before the quadratic BigInt decode.
    await rejectsFast(
      readViaTemp(legacyWith([0x8a, 40, ...new Array(40).fill(1)])),
      /LONG1 at offset \d+ has 40 bytes, expected at most 16/,
    );
  });

  test("invalid UTF-8 in a string names the file and the opcode", async () => {
    await rejectsFast(
      readViaTemp(legacyWith([0x8c, 2, 0xc3, 0x28])),
      /pytorch_model\.bin: pickle SHORT_BINUNICODE at offset \d+ is not valid UTF-8/,
    );
  });

  test("a stride-0 view of shape [2^30] and a [1e5, 1e5] view are refused before any array is made", async () => {
    const views: [number[], number[]][] = [[[2 ** 30], [0]], [[1e5, 1e5], [0, 0]], [[1e5, 1e5], [1e5, 1]]];
    for (const [size, stride] of views) {
      const s = specs().map((x) => (x.name === "a" ? { ...x, size, stride } : x));
      await rejectsFast(
        readViaTemp(legacyCheckpoint(statePickle(s, true))),
        /pytorch_model\.bin: tensor "a": view \(offset 0, size \[[\d,]+\], stride \[[\d,]+\]\) has more elements than its storage of 12/,
      );
    }
    // Within the element bound but reaching past the storage through a large stride.
    const s = specs().map((x) => (x.name === "a" ? { ...x, size: [2, 2], stride: [1e9, 1] } : x));
    await rejectsFast(
      readViaTemp(legacyCheckpoint(statePickle(s, true))),
      /tensor "a": view .* exceeds its storage of 12/,
    );
  });

  test("a deflated zip entry is refused (a 1 MiB bomb is never inflated)", async () => {
    const bomb = zip([
      { name: "c/data.pkl", data: statePickle(specs(), false) },
      ...storages().map((s) => ({ name: `c/data/${s.key}`, data: s.data })),
      { name: "c/data/bomb", data: new Uint8Array(1 << 20), deflate: true },
    ]);
    const pkl = zip([{ name: "c/data.pkl", data: statePickle(specs(), false), deflate: true }]);
    await rejectsFast(
      readViaTemp(pkl),
      /pytorch_model\.bin: zip entry c\/data\.pkl: is deflate-compressed; torch\.save writes stored/,
    );
    // The bomb is not referenced, so the stored entries still load.
    checkHandMade(await readViaTemp(bomb));
  });

  test("zip central-directory sizes and offsets are checked against the file", async () => {
    const good = zipCheckpoint();
    const eocd = good.length - 22;
    const withEocd = (at: number, v: number, bytes = 4) => {
      const b = good.slice(), dv = new DataView(b.buffer);
      if (bytes === 4) dv.setUint32(eocd + at, v, true);
      else dv.setUint16(eocd + at, v, true);
      return b;
    };
    await rejectsFast(
      readViaTemp(withEocd(12, 0x7fffffff)),
      /pytorch_model\.bin: zip central directory \(\d+ bytes at offset \d+\) lies outside the file/,
    );
    await rejectsFast(
      readViaTemp(withEocd(10, 60000, 2)),
      /pytorch_model\.bin: zip central directory claims 60000 entries/,
    );
    // An entry whose name length runs past the directory.
    const b = good.slice(), dv = new DataView(b.buffer);
    dv.setUint16(dv.getUint32(eocd + 16, true) + 28, 60000, true);
    await rejectsFast(readViaTemp(b), /zip central directory entry 0 runs past the end of the directory/);
  });
});
