/**
 * `node:path` in the browser bundle: the POSIX functions the library uses, for the paths of the in-memory
 * file system (memfs.ts), whose working directory is "/".
 * @module
 */

/** The path separator. */
export const sep = "/";

/** `path` with "." and ".." resolved and repeated slashes folded; "" becomes ".". */
export function normalize(path: string): string {
  const abs = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
    } else out.push(part);
  }
  const s = (abs ? "/" : "") + out.join("/");
  return s === "" ? "." : s;
}

/** The parts joined by "/" and normalized. */
export function join(...parts: string[]): string {
  return normalize(parts.filter((p) => p !== "").join("/"));
}

/** Whether `path` starts at the root. */
export function isAbsolute(path: string): boolean {
  return path.startsWith("/");
}

/** The absolute form of the parts, from the working directory "/". */
export function resolve(...parts: string[]): string {
  let path = "";
  for (const p of parts) path = isAbsolute(p) ? p : `${path}/${p}`;
  return normalize(`/${path}`);
}

/** Everything before the last name ("." for a bare name). */
export function dirname(path: string): string {
  const n = normalize(path);
  const i = n.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : n.slice(0, i);
}

/** The last name, without `ext` when it ends with it. */
export function basename(path: string, ext?: string): string {
  const name = normalize(path).split("/").pop() ?? "";
  return ext && name.endsWith(ext) && name !== ext ? name.slice(0, -ext.length) : name;
}

/** The extension of the last name (".json"), or "". */
export function extname(path: string): string {
  const name = basename(path);
  const i = name.lastIndexOf(".");
  return i > 0 ? name.slice(i) : "";
}

/** The path from `from` to `to`. */
export function relative(from: string, to: string): string {
  const a = resolve(from).split("/").filter((p) => p !== "");
  const b = resolve(to).split("/").filter((p) => p !== "");
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => ".."), ...b.slice(i)].join("/");
}

/** The module's functions as one object (`import path from "node:path"`). */
const path = { sep, normalize, join, isAbsolute, resolve, dirname, basename, extname, relative, posix: {} };
path.posix = path;
export const posix = path;
export default path;
