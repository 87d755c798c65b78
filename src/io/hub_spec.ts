/**
 * What `resolveModel` resolves, before anything is fetched: the model spec (`org/name@revision` or a
 * local directory), the files a model dir needs and their alternatives, the settings (options over the
 * hub variables the caller passes: the front doors read them with src/env.ts) and the errors. The hub client and the cache are in ./hub.ts.
 * @module
 */

import { stat } from "node:fs/promises";
import { homedir } from "node:os";
import { type HubSettings, hubSettingsFromEnv } from "./hf_cache.ts";

/** The base model of the notebook. */
export const DEFAULT_MODEL = "uer/gpt2-chinese-cluecorpussmall";

/**
 * One thing a model dir needs, with alternatives in order of preference: the first option whose `needs`
 * all exist in the repo is taken, together with those of its `optional` files that exist.
 */
export interface FileChoice {
  /** What it is, for messages: "weights", "tokenizer". */
  what: string;
  /** When no option exists: an error (true) or nothing (false). */
  required: boolean;
  options: ReadonlyArray<{ needs: readonly string[]; optional?: readonly string[] }>;
}

/** A wanted file: a name (required) or a {@link FileChoice}. */
export type FileSpec = string | FileChoice;

/** The tokenizer's optional files: its configs, and a chat template kept in a file of its own (transformers ≥ 4.43). */
const TOKENIZER_EXTRAS = ["tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"];

/**
 * The files of a GPT-2 model dir: config, optional generation config, weights (safetensors preferred, the
 * real base model has only `pytorch_model.bin`), tokenizer (`tokenizer.json`, else BERT's `vocab.txt` or GPT-2's `vocab.json` + `merges.txt`).
 */
export const GPT2_MODEL_FILES: readonly FileChoice[] = [
  { what: "config", required: true, options: [{ needs: ["config.json"] }] },
  { what: "generation config", required: false, options: [{ needs: ["generation_config.json"] }] },
  {
    what: "weights",
    required: true,
    options: [{ needs: ["model.safetensors"] }, { needs: ["pytorch_model.bin"] }],
  },
  {
    what: "tokenizer",
    required: true,
    options: [
      { needs: ["tokenizer.json"], optional: TOKENIZER_EXTRAS },
      { needs: ["vocab.txt"], optional: TOKENIZER_EXTRAS },
      { needs: ["vocab.json", "merges.txt"], optional: TOKENIZER_EXTRAS },
    ],
  },
];

/**
 * The files of a peft adapter repo (LoRA): its config and weights, and the tokenizer it was trained with when
 * the repo has one (the base model's otherwise).
 */
export const PEFT_ADAPTER_FILES: readonly FileChoice[] = [
  { what: "adapter config", required: true, options: [{ needs: ["adapter_config.json"] }] },
  { what: "adapter weights", required: true, options: [{ needs: ["adapter_model.safetensors"] }] },
  { ...GPT2_MODEL_FILES[3]!, required: false },
  { what: "SFT task", required: false, options: [{ needs: ["sft_task.json"] }] },
];

/** Progress of a download, reported after each chunk. */
export interface DownloadProgress {
  repoId: string;
  /** The file being downloaded. */
  file: string;
  fileDone: number;
  fileSize: number;
  /** Bytes done and to do over all files this call downloads. */
  done: number;
  total: number;
}

/** Options of `resolveModel`. Unset ones come from `env`, the hub variables ({@link hubSettingsFromEnv}). */
export interface ResolveModelOptions {
  /** The files to fetch (default {@link GPT2_MODEL_FILES}). */
  files?: readonly FileSpec[];
  /** No network: resolve from the cache only (default HF_HUB_OFFLINE). */
  offline?: boolean;
  /** The hub cache (default HF_HUB_CACHE or $HF_HOME/hub). */
  cacheDir?: string;
  /** The hub's base URL (default HF_ENDPOINT or https://huggingface.co). */
  endpoint?: string;
  /** Access token (default HF_TOKEN). */
  token?: string;
  /** Seconds a metadata request may take (default HF_HUB_ETAG_TIMEOUT, else 10). */
  etagTimeout?: number;
  /** Seconds a download may wait for its answer or its next bytes (default HF_HUB_DOWNLOAD_TIMEOUT, else 10). */
  downloadTimeout?: number;
  /** Called after each chunk; replaces the progress bar. */
  onProgress?: (p: DownloadProgress) => void;
  /** No progress bar and no notices on stderr. */
  quiet?: boolean;
  /** Where notices go (default stderr unless quiet). */
  log?: (message: string) => void;
  /** Retries of an interrupted download within this call, each resuming where it stopped (default 3). */
  retries?: number;
  /** Wait before retry n is n times this (default 1000 ms). */
  retryDelayMs?: number;
  /**
   * The hub variables to take the defaults from, as Python's `huggingface_hub` does (the front doors pass
   * `hubEnvironment()` of src/env.ts); default none: the built-in defaults.
   */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Why resolving a model failed. */
export type HubErrorKind =
  | "bad-spec"
  | "not-found"
  | "access-denied"
  | "not-cached"
  | "missing-files"
  | "integrity"
  | "http"
  | "bad-response"
  | "network";

/** An error of `resolveModel`, with a message meant for the user and a kind for code. */
export class HubError extends Error {
  override name = "HubError";
  constructor(message: string, readonly kind: HubErrorKind, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A hub repo and revision, from `org/name` or `org/name@revision`. */
export interface ModelSpec {
  repoId: string;
  revision: string;
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

/** Parses `org/name[@revision]` (revision default "main"); throws a {@link HubError} for a malformed id. */
export function parseModelSpec(spec: string): ModelSpec {
  const at = spec.indexOf("@");
  const repoId = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? "main" : spec.slice(at + 1);
  if (!REPO_ID.test(repoId) || repoId.includes("--") || repoId.includes("..")) {
    throw new HubError(
      `Invalid model: ${JSON.stringify(spec)} is neither a local directory nor a hub id like ` +
        `"${DEFAULT_MODEL}" or "${DEFAULT_MODEL}@main"`,
      "bad-spec",
    );
  }
  if (revision === "" || revision.includes("..")) {
    throw new HubError(`Invalid model revision: ${JSON.stringify(spec)}`, "bad-spec");
  }
  return { repoId, revision };
}

/** The resolved settings: options over the environment. */
export function resolveSettings(opts: ResolveModelOptions = {}): HubSettings {
  // The home directory is looked up only when no option or variable names the cache (Deno asks
  // --allow-sys=homedir for it).
  // A variable that an option replaces is not read (nor refused when malformed).
  const replaced: Record<string, string | undefined> = {};
  if (opts.cacheDir !== undefined) replaced.HF_HUB_CACHE = opts.cacheDir;
  if (opts.etagTimeout !== undefined) replaced.HF_HUB_ETAG_TIMEOUT = undefined;
  if (opts.downloadTimeout !== undefined) replaced.HF_HUB_DOWNLOAD_TIMEOUT = undefined;
  const base = opts.env ?? {};
  const env = new Proxy(base, { get: (_, k: string) => (k in replaced ? replaced[k] : base[k]) });
  const fromEnv = hubSettingsFromEnv(env, homedir);
  const token = opts.token ?? fromEnv.token;
  const seconds = (name: string, v: number | undefined, fallback: number) => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) {
      throw new HubError(`Invalid ${name}: ${v} (expected a number of seconds > 0)`, "bad-spec");
    }
    return v ?? fallback;
  };
  return {
    cacheDir: fromEnv.cacheDir,
    endpoint: (opts.endpoint ?? fromEnv.endpoint).replace(/\/+$/, ""),
    ...(token !== undefined ? { token } : {}),
    offline: opts.offline ?? fromEnv.offline,
    etagTimeout: seconds("etagTimeout", opts.etagTimeout, fromEnv.etagTimeout),
    downloadTimeout: seconds("downloadTimeout", opts.downloadTimeout, fromEnv.downloadTimeout),
  };
}

/** A spec naming an existing directory is that directory; one that looks like a path must exist. */
export async function localModelDir(spec: string): Promise<string | undefined> {
  let isDir: boolean | undefined;
  try {
    isDir = (await stat(spec)).isDirectory();
  } catch {
    isDir = undefined;
  }
  if (isDir === true) return spec;
  const idPart = spec.split("@")[0] ?? spec;
  const looksLikePath = /^(\.|\/|~)/.test(spec) || spec.includes("\\") || idPart.split("/").length > 2;
  if (isDir === false) throw new HubError(`Invalid model: ${spec} is a file, expected a directory`, "bad-spec");
  if (looksLikePath) {
    throw new HubError(
      `Model directory not found: ${spec} (a trained model is a directory that \`npm run train\` wrote with --out; ` +
        "`npm run demo` writes runs/demo/base_model offline; or give a hub id such as uer/gpt2-chinese-cluecorpussmall)",
      "bad-spec",
    );
  }
  return undefined;
}

/** A file name as the choice of that one required file. */
export function toChoice(f: FileSpec): FileChoice {
  return typeof f === "string" ? { what: f, required: true, options: [{ needs: [f] }] } : f;
}

/** Every file name a choice list may take. */
export function candidateFiles(choices: readonly FileChoice[]): string[] {
  const names = new Set<string>();
  for (const c of choices) {
    for (const o of c.options) for (const n of [...o.needs, ...(o.optional ?? [])]) names.add(n);
  }
  return [...names];
}

/** Picks the files given what exists; `missing` lists the required choices that no option satisfies. */
export function selectFiles(
  choices: readonly FileChoice[],
  exists: (name: string) => boolean,
): { files: string[]; missing: FileChoice[] } {
  const files = new Set<string>();
  const missing: FileChoice[] = [];
  for (const c of choices) {
    const option = c.options.find((o) => o.needs.every(exists));
    if (option === undefined) {
      if (c.required) missing.push(c);
      continue;
    }
    for (const n of option.needs) files.add(n);
    for (const n of option.optional ?? []) if (exists(n)) files.add(n);
  }
  return { files: [...files], missing };
}

/** "config.json; model.safetensors or pytorch_model.bin; …" for the required choices. */
export function describeChoices(choices: readonly FileChoice[], required = true): string {
  return choices
    .filter((c) => c.required === required)
    .map((c) => c.options.map((o) => o.needs.join(" + ")).join(" or "))
    .join("; ");
}

/** The optional files of the choices: every file of the optional ones, the optional extras of the required. */
export function optionalFiles(choices: readonly FileChoice[]): string[] {
  const names = new Set<string>();
  for (const c of choices) {
    for (const o of c.options) {
      for (const n of c.required ? (o.optional ?? []) : [...o.needs, ...(o.optional ?? [])]) names.add(n);
    }
  }
  return [...names];
}
