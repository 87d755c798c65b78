/**
 * Where the page's model comes from: a hub id, fetched by the browser into the in-memory hub cache
 * (`/hf-cache`, the layout src/io/hub.ts keeps on disk) and kept in the browser's storage (web/storage.ts);
 * a kept model, put back into that cache so the library resolves its id offline; or a local folder, read
 * from an `<input webkitdirectory>`. Every later step names the model as the CLI would (`--model ID` or the
 * folder's path): the library does the rest.
 * @module
 */

import { memfs } from "../src/platform/browser/memfs.ts";
import { basename, dirname } from "../src/platform/browser/path.ts";
import process from "../src/platform/browser/process.ts";
import {
  type DownloadProgress,
  GPT2_MODEL_FILES,
  parseModelSpec,
  PEFT_ADAPTER_FILES,
  resolveModel,
} from "../src/io/hub.ts";
import { candidateFiles, toChoice } from "../src/io/hub_spec.ts";
import { unsafeFileName } from "../src/io/hf_cache.ts";
import { storedFolder, type StoredModel, storeModel } from "./storage.ts";

/** The in-memory hub cache (HF_HUB_CACHE of the page). */
export const HUB_CACHE = "/hf-cache";

/** The chosen model. */
export interface ModelChoice {
  /** What the CLI's `--model` gets: the hub id, or the folder's path in memory. */
  spec: string;
  /** Its directory in memory. */
  dir: string;
  /** From the hub (resolved offline from the cache from now on) or a local folder. */
  hub: boolean;
  /** Said in the page. */
  label: string;
  /** Where a hub model came from (what keeping it records). */
  source?: { repoId: string; revision: string; commit: string };
}

/** Point the library's hub settings at the page's cache and `endpoint` (HF_ENDPOINT; default the hub). */
export function configureHub(endpoint: string | null): void {
  process.env.HF_HUB_CACHE = HUB_CACHE;
  if (endpoint !== null) process.env.HF_ENDPOINT = endpoint;
  memfs.mkdir(HUB_CACHE, { recursive: true });
}

/** The files a model or adapter folder may hold, by name (nothing else of a local folder is read). */
const KNOWN_FILES = new Set([
  ...candidateFiles(GPT2_MODEL_FILES.map(toChoice)),
  ...candidateFiles(PEFT_ADAPTER_FILES.map(toChoice)),
  "added_tokens.json",
]);

/** Fetch `spec` (`org/name` or `org/name@revision`) from the hub into the page's hub cache. */
export async function fetchFromHub(spec: string, onProgress: (p: DownloadProgress) => void): Promise<ModelChoice> {
  const { repoId, revision } = parseModelSpec(spec);
  const dir = await resolveModel(spec, { env: { ...process.env }, offline: false, onProgress, log: () => {} });
  const commit = basename(dir);
  return {
    spec,
    dir,
    hub: true,
    label: `${spec} (commit ${commit.slice(0, 10)}) from the hub`,
    source: { repoId, revision, commit },
  };
}

/** Keep a fetched model in the browser's storage (web/storage.ts). */
export async function keepModel(choice: ModelChoice): Promise<StoredModel> {
  if (!choice.source) throw new Error(`${choice.spec} is not a hub model: only those are kept`);
  return await storeModel({ id: choice.spec, ...choice.source }, memfs.files(choice.dir, { copy: false }));
}

/** Put a kept model back into the hub cache: `refs/<revision>` and `snapshots/<commit>/`. */
export function restoreStored(model: StoredModel, files: ReadonlyMap<string, Uint8Array>): ModelChoice {
  const { repoId, revision, commit } = model;
  const repo = `${HUB_CACHE}/${storedFolder(repoId)}`;
  const dir = `${repo}/snapshots/${commit}`;
  memfs.mkdir(dir, { recursive: true });
  memfs.mkdir(`${repo}/refs`, { recursive: true });
  for (const [name, bytes] of files) memfs.writeFile(`${dir}/${name}`, bytes);
  memfs.mkdir(dirname(`${repo}/refs/${revision}`), { recursive: true });
  memfs.writeFile(`${repo}/refs/${revision}`, commit);
  return {
    spec: model.id,
    dir,
    hub: true,
    label: `${model.id} (commit ${commit.slice(0, 10)}) kept in this browser`,
    source: { repoId, revision, commit },
  };
}

/** Read the model files of a local folder (the top level of an `<input webkitdirectory>`'s files). */
export async function readLocalFolder(files: FileList | readonly File[]): Promise<ModelChoice> {
  const list = [...files];
  if (list.length === 0) throw new Error("The folder is empty");
  const top = (f: File) => (f.webkitRelativePath || f.name).split("/");
  const folder = top(list[0]!).length > 1 ? top(list[0]!)[0]! : "model";
  if (unsafeFileName(folder) !== undefined) throw new Error(`Cannot read the folder ${JSON.stringify(folder)}`);
  const dir = `/local/${folder}`;
  memfs.rm(dir, { recursive: true, force: true });
  memfs.mkdir(dir, { recursive: true });
  const taken: string[] = [];
  for (const f of list) {
    const parts = top(f);
    const name = parts[parts.length - 1]!;
    if (parts.length > 2 || !KNOWN_FILES.has(name)) continue;
    memfs.writeFile(`${dir}/${name}`, new Uint8Array(await f.arrayBuffer()));
    taken.push(name);
  }
  if (!taken.includes("config.json") && !taken.includes("adapter_config.json")) {
    throw new Error(
      `The folder ${folder} has no config.json (nor a LoRA adapter's adapter_config.json): choose a model ` +
        "directory, as deno task train writes or the hub holds",
    );
  }
  return { spec: dir, dir, hub: false, label: `the local folder ${folder} (${taken.sort().join(", ")})` };
}
