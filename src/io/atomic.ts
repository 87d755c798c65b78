/**
 * Atomic writes: a reader sees either the old file (or directory) or the complete new one, never a
 * half-written one, even if the process dies mid-write.
 *
 * Files are written to a temporary sibling, fsynced and renamed over the target (rename is atomic
 * within a file system). A directory is written whole into a temporary sibling and swapped in with two
 * renames; the short window between them is the only moment the target name is absent.
 *
 * Also the existence checks that go with them ({@link exists}, {@link isFile}).
 * @module
 */

import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

function randomSuffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** Write `data` to the new file `path` (it must not exist) and fsync it before returning. */
export async function writeFileSynced(path: string, data: Uint8Array | string): Promise<void> {
  const fh = await open(path, "wx");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** True when `path` exists (a symlink counts when its target does). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** True when `path` is a regular file (a symlink counts when its target is one); false on any error. */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Write `data` to `path` atomically: into `path.<random>.tmp` in the same directory (created if needed),
 * fsync, then rename over `path`. The temporary file is removed if anything fails.
 */
export async function atomicWriteFile(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomSuffix()}.tmp`;
  try {
    await writeFileSynced(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Options of {@link atomicWriteDir}. */
export interface AtomicWriteDirOptions {
  /**
   * Replace an existing directory even if it does not contain this file (default "config.json"): a
   * guard against replacing a directory that is not a previous save (say, the project root) by mistake.
   * Set to null to replace any directory.
   */
  mustContain?: string | null;
}

/**
 * Write a whole directory atomically: the files (names relative to `dir`, no subfolders) go into
 * `<dir>.tmp-<random>`, which then replaces `dir`. An existing `dir` is renamed away first and removed
 * after the swap, so files in it that are not in `files` are gone afterwards; it is put back if the swap
 * fails. Refuses to replace an existing, non-empty directory that lacks `opts.mustContain`.
 */
export async function atomicWriteDir(
  dir: string,
  files: Record<string, Uint8Array | string>,
  opts: AtomicWriteDirOptions = {},
): Promise<void> {
  const mustContain = opts.mustContain === undefined ? "config.json" : opts.mustContain;
  for (const name of Object.keys(files)) {
    if (name === "" || name !== basename(name) || name === "." || name === "..") {
      throw new Error(`Cannot write ${dir}: file name "${name}" must be a plain name without a folder`);
    }
  }
  const dirExists = await exists(dir);
  if (dirExists) {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new Error(`Cannot write ${dir}: it exists and is not a directory`);
    const present = await readdir(dir);
    if (mustContain !== null && present.length > 0 && !present.includes(mustContain)) {
      throw new Error(
        `Cannot write ${dir}: it exists and does not look like a previous save (no ${mustContain}); refusing to replace it`,
      );
    }
  }
  await mkdir(dirname(dir), { recursive: true });
  const suffix = randomSuffix();
  const tmp = `${dir}.tmp-${suffix}`, old = `${dir}.old-${suffix}`;
  try {
    await mkdir(tmp);
    for (const [name, data] of Object.entries(files)) await writeFileSynced(join(tmp, name), data);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (dirExists) await rename(dir, old);
  try {
    await rename(tmp, dir);
  } catch (e) {
    if (dirExists) await rename(old, dir);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (dirExists) await rm(old, { recursive: true, force: true });
}
