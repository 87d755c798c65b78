/**
 * Models kept in the browser: the origin private file system (`navigator.storage.getDirectory()`), one folder
 * per model under `models/`, holding the model directory's files and `source.json` (where it came from, its
 * files and size). `source.json` is written last, so a folder without it is a copy that was interrupted: it is
 * not listed and is removed at the next listing. What is read back is checked (names, sizes) before use.
 * @module
 */

/** What a kept model is. */
export interface StoredModel {
  /** What was asked for: `org/name` or `org/name@revision`. */
  id: string;
  repoId: string;
  revision: string;
  /** The folder under `models/` (the hub cache's `models--org--name`; one per repo, any revision). */
  folder: string;
  /** The commit it was fetched at. */
  commit: string;
  /** The files and their sizes. */
  files: Record<string, number>;
  /** When it was kept (ISO 8601). */
  storedAt: string;
}

const SOURCE = "source.json";
/** A plain file or folder name: letters, digits, `_`, `.` and `-`, not "." or "..". */
const SAFE_NAME = /^(?!\.\.?$)[\w.-]+$/;

/**
 * Run `work` holding the page's storage lock (Web Locks; other tabs of the page wait), so that no tab lists or
 * removes a folder another is still writing. Without Web Locks it runs at once.
 */
function locked<T>(work: () => Promise<T>): Promise<T> {
  const locks = (navigator as { locks?: { request(name: string, cb: () => Promise<T>): Promise<T> } }).locks;
  return locks ? locks.request("gpt2-sft-models", work) : work();
}

/** The folder under `models/` for a model id (`org/name` → `models--org--name`, as the hub cache names it). */
export function storedFolder(id: string): string {
  const folder = `models--${id.split("/").join("--")}`;
  if (!SAFE_NAME.test(folder) || folder.includes("..")) {
    throw new Error(`Cannot keep ${JSON.stringify(id)}: not a model id`);
  }
  return folder;
}

/** The `models/` directory of the origin private file system, or undefined where the browser has none. */
async function modelsDir(): Promise<FileSystemDirectoryHandle | undefined> {
  const storage = navigator.storage as StorageManager | undefined;
  if (!storage?.getDirectory) return undefined;
  try {
    return await (await storage.getDirectory()).getDirectoryHandle("models", { create: true });
  } catch {
    return undefined;
  }
}

/** Whether models can be kept here. */
export async function storageAvailable(): Promise<boolean> {
  return (await modelsDir()) !== undefined;
}

/** Check what a `source.json` (of the folder `folder`) holds before it is used. */
export function parseSource(text: string, folder: string): StoredModel {
  const fail = (why: string): never => {
    throw new Error(`The kept model ${folder}: ${SOURCE} ${why}`);
  };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    fail("is not JSON");
  }
  const o = v as Partial<StoredModel>;
  if (typeof o.id !== "string" || o.folder !== folder || typeof o.storedAt !== "string") {
    fail("lacks id/folder/storedAt");
  }
  if (typeof o.files !== "object" || o.files === null) fail("lacks files");
  if (typeof o.repoId !== "string" || typeof o.revision !== "string" || typeof o.commit !== "string") {
    fail("lacks repoId/revision/commit");
  }
  let repoFolder: string | undefined;
  try {
    repoFolder = storedFolder(o.repoId!);
  } catch {
    // an id that names no folder: said below
  }
  if (repoFolder !== folder) fail(`names ${JSON.stringify(o.repoId)}, which is not kept in ${folder}`);
  if (!/^[0-9a-f]{40}$/.test(o.commit!)) fail("has an invalid commit");
  if (o.revision === "" || /(^|\/)\.\.?($|\/)|\/\/|^\/|\/$/.test(o.revision!)) fail("has an invalid revision");
  for (const [name, size] of Object.entries(o.files!)) {
    if (!SAFE_NAME.test(name) || name === SOURCE || !Number.isSafeInteger(size) || (size as number) < 0) {
      fail(`has an invalid file entry ${JSON.stringify(name)}`);
    }
  }
  return o as StoredModel;
}

/** The kept models, newest first; interrupted copies are removed. */
export function listStored(): Promise<StoredModel[]> {
  return locked(listUnlocked);
}

async function listUnlocked(): Promise<StoredModel[]> {
  const dir = await modelsDir();
  if (!dir) return [];
  const out: StoredModel[] = [];
  const names: string[] = [];
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
  for (const folder of names) {
    const sub = await dir.getDirectoryHandle(folder).catch(() => undefined);
    if (!sub) continue;
    const source = await sub.getFileHandle(SOURCE).then((h) => h.getFile()).catch(() => undefined);
    if (!source) {
      await dir.removeEntry(folder, { recursive: true }).catch(() => {});
      continue;
    }
    try {
      out.push(parseSource(await source.text(), folder));
    } catch {
      await dir.removeEntry(folder, { recursive: true }).catch(() => {});
    }
  }
  return out.sort((a, b) => b.storedAt.localeCompare(a.storedAt));
}

/**
 * Keep a model directory's files (top-level names only) under its repo, replacing an earlier copy (of any
 * revision). Should the writing fail, the earlier copy is gone too; the model in memory is not touched.
 */
export function storeModel(
  meta: { id: string; repoId: string; revision: string; commit: string },
  files: ReadonlyMap<string, Uint8Array>,
): Promise<StoredModel> {
  return locked(() => storeUnlocked(meta, files));
}

async function storeUnlocked(
  meta: { id: string; repoId: string; revision: string; commit: string },
  files: ReadonlyMap<string, Uint8Array>,
): Promise<StoredModel> {
  const dir = await modelsDir();
  if (!dir) throw new Error("This browser offers no origin private file system: the model cannot be kept");
  const folder = storedFolder(meta.repoId);
  await dir.removeEntry(folder, { recursive: true }).catch(() => {});
  const sub = await dir.getDirectoryHandle(folder, { create: true });
  const sizes: Record<string, number> = {};
  for (const [name, bytes] of files) {
    if (!SAFE_NAME.test(name) || name === SOURCE) throw new Error(`Cannot keep ${name}: not a plain file name`);
    const w = await (await sub.getFileHandle(name, { create: true })).createWritable();
    await w.write(bytes as Uint8Array<ArrayBuffer>);
    await w.close();
    sizes[name] = bytes.length;
  }
  const stored: StoredModel = {
    id: meta.id,
    repoId: meta.repoId,
    revision: meta.revision,
    folder,
    commit: meta.commit,
    files: sizes,
    storedAt: new Date().toISOString(),
  };
  const w = await (await sub.getFileHandle(SOURCE, { create: true })).createWritable();
  await w.write(JSON.stringify(stored, null, 2));
  await w.close();
  // ask the browser not to evict it under storage pressure (it may say no; the copy stays either way)
  await navigator.storage.persist?.().catch(() => false);
  return stored;
}

/** A kept model's files, each checked against the size `source.json` recorded. */
export async function loadStored(model: StoredModel): Promise<Map<string, Uint8Array>> {
  const dir = await modelsDir();
  if (!dir) throw new Error("This browser offers no origin private file system");
  const sub = await dir.getDirectoryHandle(model.folder);
  const out = new Map<string, Uint8Array>();
  for (const [name, size] of Object.entries(model.files)) {
    const file = await (await sub.getFileHandle(name)).getFile();
    if (file.size !== size) {
      throw new Error(`The kept model ${model.id}: ${name} has ${file.size} bytes, ${size} were kept; fetch it again`);
    }
    out.set(name, new Uint8Array(await file.arrayBuffer()));
  }
  return out;
}

/** Forget a kept model. */
export function removeStored(model: StoredModel): Promise<void> {
  return locked(async () => {
    const dir = await modelsDir();
    await dir?.removeEntry(model.folder, { recursive: true });
  });
}

/** Bytes used and available to this page's storage, where the browser says. */
export async function storageEstimate(): Promise<{ usage: number; quota: number } | undefined> {
  const e = await navigator.storage?.estimate?.().catch(() => undefined);
  return e?.usage !== undefined && e.quota !== undefined ? { usage: e.usage, quota: e.quota } : undefined;
}
