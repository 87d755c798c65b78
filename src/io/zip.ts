/**
 * The zip archives `torch.save` writes (torch ≥ 1.6): the central directory (zip64 included) and the bytes
 * of stored entries. Hostile or broken archives fail fast with bounded memory, every error naming the file:
 * central-directory sizes and offsets are checked against the file length, and deflated entries are refused
 * rather than inflated (a small entry could expand to gigabytes; `torch.save` stores its entries).
 *
 * {@link zipStored} writes such an archive (stored entries, CRC-32): the browser page's download of a model
 * directory.
 * @module
 */

import { crc32 } from "./crc32.ts";

/** One entry of a zip archive's central directory. */
export interface ZipEntry {
  name: string;
  method: number;
  compSize: number;
  size: number;
  localOffset: number;
}

/** Read the central directory of a zip archive (zip64 included). */
export function readZipDirectory(bytes: Uint8Array, file: string): Map<string, ZipEntry> {
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: ${msg}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // End of central directory: 22 bytes + a comment of up to 65535 bytes, at the end of the file.
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail("zip end-of-central-directory record not found (the file is truncated or not a zip archive)");
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // Zip64: the locator sits just before the EOCD and points to the zip64 EOCD record.
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== 0x07064b50) fail("zip64 end-of-central-directory locator not found");
    const z = Number(view.getBigUint64(loc + 8, true));
    if (z + 56 > bytes.length || view.getUint32(z, true) !== 0x06064b50) {
      fail("zip64 end-of-central-directory is corrupt");
    }
    count = Number(view.getBigUint64(z + 32, true));
    cdSize = Number(view.getBigUint64(z + 40, true));
    cdOffset = Number(view.getBigUint64(z + 48, true));
  }
  if (cdOffset + cdSize > eocd) {
    fail(`zip central directory (${cdSize} bytes at offset ${cdOffset}) lies outside the file (${bytes.length} bytes)`);
  }
  // Each entry takes at least 46 bytes, so the count is bounded by the directory's size.
  if (count > cdSize / 46) fail(`zip central directory claims ${count} entries in ${cdSize} bytes`);
  const cdEnd = cdOffset + cdSize;

  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder();
  let p = cdOffset;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cdEnd || view.getUint32(p, true) !== 0x02014b50) {
      fail(`zip central directory entry ${n} is corrupt`);
    }
    const method = view.getUint16(p + 10, true);
    let compSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true), extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    // The variable-length fields must stay inside the directory, or names would be read from file data.
    if (p + 46 + nameLen + extraLen + commentLen > cdEnd) {
      fail(`zip central directory entry ${n} runs past the end of the directory (offset ${cdEnd})`);
    }
    const name = utf8.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // Zip64 extended information (header id 1) holds the fields that overflowed, in this order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = view.getUint16(e, true), len = view.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        const next = () => {
          if (q + 8 > Math.min(e + 4 + len, extraEnd)) fail(`zip entry ${name}: zip64 extra field is truncated`);
          const v = Number(view.getBigUint64(q, true));
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compSize === 0xffffffff) compSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      e += 4 + len;
    }
    entries.set(name, { name, method, compSize, size, localOffset });
    p = extraEnd + commentLen;
  }
  return entries;
}

/**
 * The bytes of one zip entry. Only stored entries (method 0, what `torch.save` writes) are read: a
 * deflated entry could inflate to gigabytes from a few megabytes, and no torch checkpoint needs one.
 */
export function readZipEntry(bytes: Uint8Array, entry: ZipEntry, file: string): Uint8Array {
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: zip entry ${entry.name}: ${msg}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const p = entry.localOffset;
  if (p + 30 > bytes.length || view.getUint32(p, true) !== 0x04034b50) fail("local header is missing or corrupt");
  // The local header has its own name and extra lengths (torch pads the extra field to align the data).
  const start = p + 30 + view.getUint16(p + 26, true) + view.getUint16(p + 28, true);
  const end = start + entry.compSize;
  if (end > bytes.length) fail(`data (${entry.compSize} bytes at offset ${start}) runs past the end of the file`);
  if (entry.method === 8) {
    fail(
      "is deflate-compressed; torch.save writes stored (uncompressed) entries, re-save the checkpoint with torch.save",
    );
  }
  if (entry.method !== 0) fail(`unsupported compression method ${entry.method} (only stored entries are supported)`);
  if (entry.size !== entry.compSize) {
    fail(`stored entry has compressed size ${entry.compSize} but uncompressed size ${entry.size}`);
  }
  return bytes.subarray(start, end);
}

/** The largest archive {@link zipStored} writes: every size and offset must fit the classic 32-bit fields. */
export const ZIP32_LIMIT = 0xffffffff;

/**
 * A zip archive of `files` (name → bytes), entries stored uncompressed as `torch.save` writes them, as the
 * parts to concatenate (the files' bytes are not copied: the caller concatenates, e.g. into a `Blob`).
 * Names must be relative paths with "/" separators. Archives over 4 GiB (which need zip64) are refused.
 */
export function zipStored(files: ReadonlyMap<string, Uint8Array>, date: Date = new Date()): Uint8Array[] {
  const utf8 = new TextEncoder();
  // MS-DOS time and date, local time, 2-second resolution (1980 at the earliest)
  const year = Math.max(date.getFullYear(), 1980);
  const dosTime = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
  const dosDate = ((year - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    if (name.includes("\\") || name.split("/").some((part) => part === "" || part === "." || part === "..")) {
      throw new Error(`Cannot zip ${JSON.stringify(name)}: expected a relative path with "/" separators`);
    }
    const nameBytes = utf8.encode(name);
    if (offset + 30 + nameBytes.length + data.length >= ZIP32_LIMIT) {
      throw new Error(
        `Cannot zip ${name}: the archive would pass 4 GiB (${offset + data.length} bytes), which needs zip64; ` +
          "save the files one by one",
      );
    }
    const crc = crc32(data);
    const local = new Uint8Array(30 + nameBytes.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true); // version needed: 2.0
    lv.setUint16(6, 0x0800, true); // flags: names are UTF-8
    lv.setUint16(8, 0, true); // method: stored
    lv.setUint16(10, dosTime, true);
    lv.setUint16(12, dosDate, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, nameBytes.length, true);
    local.set(nameBytes, 30);
    const entry = new Uint8Array(46 + nameBytes.length);
    const cv = new DataView(entry.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, (3 << 8) | 20, true); // made by: Unix, 2.0
    entry.set(local.subarray(4, 30), 6); // version needed … name length: as the local header
    cv.setUint32(38, 0o100644 << 16, true); // external attributes: a regular file, rw-r--r--
    cv.setUint32(42, offset, true);
    entry.set(nameBytes, 46);
    parts.push(local, data);
    central.push(entry);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((n, e) => n + e.length, 0);
  // 0xffff and 0xffffffff are the zip64 markers (readZipDirectory reads them so): they must not appear here
  if (files.size >= 0xffff || offset + cdSize + 22 >= ZIP32_LIMIT) {
    throw new Error(`Cannot zip ${files.size} files of ${offset} bytes: that needs zip64; save the files one by one`);
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, files.size, true);
  ev.setUint16(10, files.size, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  return [...parts, ...central, end];
}
