/**
 * An in-memory file system: what `node:fs` and `node:fs/promises` are in the browser bundle. The library
 * reads and writes model directories, data files, run directories and reports by path; in a browser tab
 * those paths live here (the page puts a model or the demo's config in, and takes a saved model out).
 * Paths are POSIX; relative ones start at the working directory "/". Errors carry Node's `code`
 * (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY) and a message in Node's form.
 *
 * @example
 * ```ts
 * import { memfs } from "./memfs.ts";
 * memfs.writeFile("data/tiny_config.json", "{}");
 * console.log(memfs.list("data")); // ["tiny_config.json"]
 * ```
 * @module
 */

import { dirname, resolve } from "./path.ts";

/** A file: its bytes (a buffer of some capacity, of which `size` are used). */
interface FileNode {
  kind: "file";
  bytes: Uint8Array;
  size: number;
  mtimeMs: number;
}

/** A directory: its entries by name. */
interface DirNode {
  kind: "dir";
  entries: Map<string, FileNode | DirNode>;
  mtimeMs: number;
}

type Node = FileNode | DirNode;

/** An error in Node's shape: `code` and "CODE: text, op 'path'". */
export class FsError extends Error {
  constructor(readonly code: string, text: string, op: string, path: string) {
    super(`${code}: ${text}, ${op} '${path}'`);
    this.name = "FsError";
  }
}

const TEXT: Record<string, string> = {
  ENOENT: "no such file or directory",
  EEXIST: "file already exists",
  ENOTDIR: "not a directory",
  EISDIR: "illegal operation on a directory",
  ENOTEMPTY: "directory not empty",
  EBADF: "bad file descriptor",
};

function fail(code: string, op: string, path: string): never {
  throw new FsError(code, TEXT[code] ?? code, op, path);
}

/** What `stat` returns: the parts of Node's `Stats` the library reads. */
export interface MemStats {
  size: number;
  mtimeMs: number;
  mtime: Date;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

/** An open file: where writes go. */
interface OpenFile {
  node: FileNode;
  path: string;
  append: boolean;
  pos: number;
}

function toBytes(data: Uint8Array | ArrayBufferView | string): Uint8Array {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The file system itself. One instance, {@link memfs}, backs the `node:fs` stand-ins. */
export class MemFs {
  #root: DirNode = { kind: "dir", entries: new Map(), mtimeMs: Date.now() };
  #fds = new Map<number, OpenFile>();
  #nextFd = 3;

  /** The node at `path`, or undefined. */
  #find(path: string): Node | undefined {
    let node: Node = this.#root;
    for (const part of resolve(path).split("/").filter((p) => p !== "")) {
      if (node.kind !== "dir") return undefined;
      const next: Node | undefined = node.entries.get(part);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  /** The parent directory of `path` and the last name, or a thrown ENOENT/ENOTDIR. */
  #parent(path: string, op: string): { dir: DirNode; name: string } {
    const abs = resolve(path);
    const parent = this.#find(dirname(abs));
    if (!parent) fail("ENOENT", op, path);
    if (parent.kind !== "dir") fail("ENOTDIR", op, path);
    const name = abs.split("/").pop()!;
    if (name === "") fail("EISDIR", op, path);
    return { dir: parent, name };
  }

  #file(path: string, op: string): FileNode {
    const node = this.#find(path);
    if (!node) fail("ENOENT", op, path);
    if (node.kind !== "file") fail("EISDIR", op, path);
    return node;
  }

  /** Whether something is at `path`. */
  exists(path: string): boolean {
    return this.#find(path) !== undefined;
  }

  /** A file's bytes (a copy). */
  readFile(path: string): Uint8Array {
    const f = this.#file(path, "open");
    return f.bytes.slice(0, f.size);
  }

  /** Create or replace a file (its parent must exist). The bytes are copied. */
  writeFile(path: string, data: Uint8Array | ArrayBufferView | string, opts: { exclusive?: boolean } = {}): void {
    const { dir, name } = this.#parent(path, "open");
    const old = dir.entries.get(name);
    if (old && opts.exclusive) fail("EEXIST", "open", path);
    if (old?.kind === "dir") fail("EISDIR", "open", path);
    const bytes = toBytes(data).slice();
    dir.entries.set(name, { kind: "file", bytes, size: bytes.length, mtimeMs: Date.now() });
  }

  /**
   * Give the file at `target` a second name, `path` (a hard link: both share one file, no bytes are copied;
   * there are no symbolic links here). `path` must not exist.
   */
  link(target: string, path: string): void {
    const node = this.#file(target, "link");
    const { dir, name } = this.#parent(path, "link");
    if (dir.entries.has(name)) fail("EEXIST", "link", path);
    dir.entries.set(name, node);
  }

  /** Make a directory; `recursive` makes its parents too and accepts one that exists. */
  mkdir(path: string, opts: { recursive?: boolean } = {}): void {
    const abs = resolve(path);
    if (opts.recursive) {
      let node: DirNode = this.#root;
      for (const part of abs.split("/").filter((p) => p !== "")) {
        const next = node.entries.get(part);
        if (next?.kind === "file") fail("ENOTDIR", "mkdir", path);
        if (next) node = next;
        else {
          const made: DirNode = { kind: "dir", entries: new Map(), mtimeMs: Date.now() };
          node.entries.set(part, made);
          node = made;
        }
      }
      return;
    }
    const { dir, name } = this.#parent(path, "mkdir");
    if (dir.entries.has(name)) fail("EEXIST", "mkdir", path);
    dir.entries.set(name, { kind: "dir", entries: new Map(), mtimeMs: Date.now() });
  }

  /** The names in a directory, sorted. */
  list(path: string): string[] {
    const node = this.#find(path);
    if (!node) fail("ENOENT", "scandir", path);
    if (node.kind !== "dir") fail("ENOTDIR", "scandir", path);
    return [...node.entries.keys()].sort();
  }

  /** Size and kind of what is at `path`. */
  stat(path: string): MemStats {
    const node = this.#find(path);
    if (!node) fail("ENOENT", "stat", path);
    const size = node.kind === "file" ? node.size : 0;
    return {
      size,
      mtimeMs: node.mtimeMs,
      mtime: new Date(node.mtimeMs),
      isFile: () => node.kind === "file",
      isDirectory: () => node.kind === "dir",
      isSymbolicLink: () => false,
    };
  }

  /** Remove a file or (with `recursive`) a directory tree; `force` ignores a missing path. */
  rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): void {
    const node = this.#find(path);
    if (!node) {
      if (opts.force) return;
      fail("ENOENT", "rm", path);
    }
    if (node.kind === "dir" && !opts.recursive) fail("EISDIR", "rm", path);
    const { dir, name } = this.#parent(path, "rm");
    dir.entries.delete(name);
  }

  /** Move `from` to `to`, replacing a file or an empty directory there (as POSIX rename does). */
  rename(from: string, to: string): void {
    const node = this.#find(from);
    if (!node) fail("ENOENT", "rename", from);
    const target = this.#parent(to, "rename");
    const old = target.dir.entries.get(target.name);
    if (old?.kind === "dir" && old.entries.size > 0) fail("ENOTEMPTY", "rename", to);
    if (old && old.kind !== node.kind) fail(old.kind === "dir" ? "EISDIR" : "ENOTDIR", "rename", to);
    const src = this.#parent(from, "rename");
    src.dir.entries.delete(src.name);
    target.dir.entries.set(target.name, node);
  }

  /** Open a file for writing ("w", "wx", "a", "ax") or reading ("r"); returns a descriptor. */
  open(path: string, flags: string): number {
    let node = this.#find(path);
    if (flags.startsWith("r")) {
      if (!node) fail("ENOENT", "open", path);
      if (node.kind === "dir") {
        // a directory opens (for fsync) as a file with no bytes
        const fd = this.#nextFd++;
        this.#fds.set(fd, {
          node: { kind: "file", bytes: new Uint8Array(0), size: 0, mtimeMs: 0 },
          path,
          append: false,
          pos: 0,
        });
        return fd;
      }
    } else {
      if (node && flags.includes("x")) fail("EEXIST", "open", path);
      if (node?.kind === "dir") fail("EISDIR", "open", path);
      if (!node || flags.startsWith("w")) {
        this.writeFile(path, new Uint8Array(0));
        node = this.#find(path)!;
      }
    }
    const fd = this.#nextFd++;
    const file = node as FileNode;
    this.#fds.set(fd, { node: file, path, append: flags.startsWith("a"), pos: flags.startsWith("a") ? file.size : 0 });
    return fd;
  }

  #open(fd: number): OpenFile {
    const f = this.#fds.get(fd);
    if (!f) fail("EBADF", "write", String(fd));
    return f;
  }

  /** Write at the descriptor's position (at the end for "a"); returns the bytes written. */
  write(fd: number, data: Uint8Array | ArrayBufferView | string): number {
    const f = this.#open(fd);
    const bytes = toBytes(data);
    const at = f.append ? f.node.size : f.pos;
    const end = at + bytes.length;
    if (end > f.node.bytes.length) {
      const grown = new Uint8Array(Math.max(end, 2 * f.node.bytes.length, 64));
      grown.set(f.node.bytes.subarray(0, f.node.size));
      f.node.bytes = grown;
    }
    f.node.bytes.set(bytes, at);
    f.node.size = Math.max(f.node.size, end);
    f.node.mtimeMs = Date.now();
    f.pos = end;
    return bytes.length;
  }

  /** Cut or extend the descriptor's file to `length` bytes. */
  truncate(fd: number, length: number): void {
    const f = this.#open(fd);
    if (length > f.node.bytes.length) {
      const grown = new Uint8Array(length);
      grown.set(f.node.bytes.subarray(0, f.node.size));
      f.node.bytes = grown;
    } else f.node.bytes.fill(0, length, f.node.size);
    f.node.size = length;
  }

  /** Close a descriptor. */
  close(fd: number): void {
    this.#open(fd);
    this.#fds.delete(fd);
  }

  /**
   * Every file under `dir`, by path relative to it, with its bytes: copies, or with `copy: false` views of the
   * files' own bytes (for a caller that only reads them at once, as a download does).
   */
  files(dir: string, opts: { copy?: boolean } = {}): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    const walk = (path: string, rel: string) => {
      for (const name of this.list(path)) {
        const full = `${path}/${name}`, r = rel === "" ? name : `${rel}/${name}`;
        if (this.stat(full).isDirectory()) walk(full, r);
        else if (opts.copy === false) {
          const f = this.#file(full, "open");
          out.set(r, f.bytes.subarray(0, f.size));
        } else out.set(r, this.readFile(full));
      }
    };
    walk(resolve(dir), "");
    return out;
  }
}

/** The one file system of the page. */
export const memfs: MemFs = new MemFs();
