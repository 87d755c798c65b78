// The zip archives of src/io/zip.ts: what zipStored writes (the browser page's model download) reads back
// through readZipDirectory/readZipEntry, with the CRC-32 of every entry; bad names are refused.
import { describe, expect, test } from "bun:test";
import { crc32 } from "../src/io/crc32.ts";
import { readZipDirectory, readZipEntry, zipStored } from "../src/io/zip.ts";

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

describe("zipStored", () => {
  test("writes stored entries that read back byte for byte, with their CRC-32 and a DOS date", () => {
    const big = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff);
    const files = new Map<string, Uint8Array>([
      ["config.json", new TextEncoder().encode('{"n_layer": 2}')],
      ["model.safetensors", big],
      ["子目录/词表.txt", new TextEncoder().encode("[PAD]\n[UNK]\n")],
      ["empty", new Uint8Array(0)],
    ]);
    const zip = concat(zipStored(files, new Date(2026, 11, 3, 17, 30, 58)));
    const dir = readZipDirectory(zip, "model.zip");
    expect([...dir.keys()]).toEqual([...files.keys()]);
    const view = new DataView(zip.buffer);
    for (const [name, bytes] of files) {
      const e = dir.get(name)!;
      expect(e.method).toBe(0);
      expect(readZipEntry(zip, e, "model.zip")).toEqual(bytes);
      // the local header's CRC-32, time and date
      expect(view.getUint32(e.localOffset + 14, true)).toBe(crc32(bytes));
      expect(view.getUint16(e.localOffset + 10, true)).toBe((17 << 11) | (30 << 5) | 29);
      expect(view.getUint16(e.localOffset + 12, true)).toBe(((2026 - 1980) << 9) | (12 << 5) | 3);
    }
    expect(zip.length).toBe(
      [...files].reduce((n, [k, v]) => n + 30 + 46 + 2 * new TextEncoder().encode(k).length + v.length, 22),
    );
  });

  test("refuses names that are not relative paths", () => {
    for (const bad of ["", "/etc/passwd", "a/../../b", "a\\b", "./a", "a//b", "a/"]) {
      expect(() => zipStored(new Map([[bad, new Uint8Array(1)]]))).toThrow("expected a relative path");
    }
  });
});
