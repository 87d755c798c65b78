/**
 * `node:fs` in the browser bundle: the synchronous calls the library makes (metrics logs, the run lock,
 * existence checks), on the in-memory file system of memfs.ts, and its `promises`.
 * @module
 */

import { memfs, type MemStats } from "./memfs.ts";
import * as promises from "./fs_promises.ts";

export { promises };

type Encoding = "utf8" | "utf-8" | { encoding?: string } | undefined;

function wantsText(enc: Encoding): boolean {
  const e = typeof enc === "string" ? enc : enc?.encoding;
  return e === "utf8" || e === "utf-8";
}

/** Whether something is at `path`. */
export function existsSync(path: string): boolean {
  return memfs.exists(path);
}

/** A file's bytes, or its text with an encoding. */
export function readFileSync(path: string, enc?: Encoding): Uint8Array | string {
  const bytes = memfs.readFile(path);
  return wantsText(enc) ? new TextDecoder().decode(bytes) : bytes;
}

/** Create or replace a file. */
export function writeFileSync(path: string, data: Uint8Array | string): void {
  memfs.writeFile(path, data);
}

/** Make a directory (`recursive`: its parents too). */
export function mkdirSync(path: string, opts: { recursive?: boolean } = {}): void {
  memfs.mkdir(path, opts);
}

/** Remove a file or a tree. */
export function rmSync(path: string, opts: { recursive?: boolean; force?: boolean } = {}): void {
  memfs.rm(path, opts);
}

/** The names in a directory. */
export function readdirSync(path: string): string[] {
  return memfs.list(path);
}

/** Size and kind. */
export function statSync(path: string): MemStats {
  return memfs.stat(path);
}

/** Open a file ("r", "w", "wx", "a", "w+"); returns a descriptor. */
export function openSync(path: string, flags = "r"): number {
  return memfs.open(path, flags);
}

/** Write to a descriptor. */
export function writeSync(fd: number, data: Uint8Array | string): number {
  return memfs.write(fd, data);
}

/** Close a descriptor. */
export function closeSync(fd: number): void {
  memfs.close(fd);
}

/** A file's bytes as a stream of one chunk (what `for await` over a read stream sees). */
export function createReadStream(path: string): AsyncIterable<Uint8Array> {
  return {
    async *[Symbol.asyncIterator]() {
      yield memfs.readFile(path);
    },
  };
}
