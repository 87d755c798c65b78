/**
 * `node:url` in the browser bundle: file URLs to paths of the in-memory file system and back.
 * @module
 */

/** The path of a `file:` URL. */
export function fileURLToPath(url: string | URL): string {
  const u = typeof url === "string" ? new URL(url) : url;
  return decodeURIComponent(u.pathname);
}

/** The `file:` URL of a path. */
export function pathToFileURL(path: string): URL {
  return new URL(`file://${encodeURI(path.startsWith("/") ? path : `/${path}`)}`);
}
