/**
 * `node:fs/promises` in the browser bundle: the library's file calls on the in-memory file system of
 * memfs.ts (each completes at once; the promises keep the library's code as it is).
 * @module
 */

import { memfs, type MemStats } from "./memfs.ts";
import { dirname, resolve } from "./path.ts";

type Encoding = "utf8" | "utf-8" | { encoding?: string } | undefined;

function wantsText(enc: Encoding): boolean {
  const e = typeof enc === "string" ? enc : enc?.encoding;
  return e === "utf8" || e === "utf-8";
}

/** A file's bytes, or its text with an encoding. */
export function readFile(path: string, enc?: Encoding): Promise<Uint8Array | string> {
  return Promise.resolve().then(() => {
    const bytes = memfs.readFile(path);
    return wantsText(enc) ? new TextDecoder().decode(bytes) : bytes;
  });
}

/** Create or replace a file. */
export function writeFile(path: string, data: Uint8Array | string): Promise<void> {
  return Promise.resolve().then(() => memfs.writeFile(path, data));
}

/** Make a directory (`recursive`: its parents too). */
export function mkdir(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
  return Promise.resolve().then(() => memfs.mkdir(path, opts));
}

/** The names in a directory. */
export function readdir(path: string): Promise<string[]> {
  return Promise.resolve().then(() => memfs.list(path));
}

/** Size and kind. */
export function stat(path: string): Promise<MemStats> {
  return Promise.resolve().then(() => memfs.stat(path));
}

/** Remove a file or a tree. */
export function rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
  return Promise.resolve().then(() => memfs.rm(path, opts));
}

/** Move a file or directory. */
export function rename(from: string, to: string): Promise<void> {
  return Promise.resolve().then(() => memfs.rename(from, to));
}

/** Copy a file. */
export function copyFile(from: string, to: string): Promise<void> {
  return Promise.resolve().then(() => memfs.writeFile(to, memfs.readFile(from)));
}

/**
 * There are no symbolic links in memory: a "symlink" is a second name for its target's file (a hard link, so
 * the hub cache's snapshot files share their blobs' bytes), the target taken relative to the link's directory
 * as a symlink's is.
 */
export function symlink(target: string, path: string): Promise<void> {
  return Promise.resolve().then(() => memfs.link(resolve(dirname(resolve(path)), target), path));
}

/** An open file, as Node's `FileHandle`. */
export class FileHandle {
  constructor(readonly fd: number) {}
  /** Write all of `data` at the current position. */
  writeFile(data: Uint8Array | string): Promise<void> {
    return Promise.resolve().then(() => void memfs.write(this.fd, data));
  }
  /** Write `data` at the current position. */
  write(data: Uint8Array | string): Promise<{ bytesWritten: number }> {
    return Promise.resolve().then(() => ({ bytesWritten: memfs.write(this.fd, data) }));
  }
  /** Cut or extend the file. */
  truncate(length = 0): Promise<void> {
    return Promise.resolve().then(() => memfs.truncate(this.fd, length));
  }
  /** Memory needs no flush. */
  sync(): Promise<void> {
    return Promise.resolve();
  }
  /** Close it. */
  close(): Promise<void> {
    return Promise.resolve().then(() => memfs.close(this.fd));
  }
}

/** Open a file ("r", "w", "wx", "a"). */
export function open(path: string, flags = "r"): Promise<FileHandle> {
  return Promise.resolve().then(() => new FileHandle(memfs.open(path, flags)));
}
