/**
 * The browser page's entry: `?demo=1` runs the offline demo (`&backend=cpu`, and the demo's flags as
 * parameters); `?parity=DIR` the parity check against the fixture `tests/fixtures/DIR` that the server
 * serves under /fixtures/ (`&backend=cpu|webgpu`). Each writes its JSON into `<pre id="result">` and sets
 * `data-state` on the body to "done" or "error" (with the message in `<pre id="error">`). Without either, the
 * interactive page (web/app.ts; `?endpoint=URL` points it at another hub) is built and the body's `data-state`
 * is "ready".
 * @module
 */

import "../src/platform/browser/globals.ts";
import { demoMain } from "../demo.ts";
import { memfs } from "../src/platform/browser/memfs.ts";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import { formatParityTable, runParity } from "../src/parity.ts";
import { TrainingView } from "./training_view.ts";
import { runApp } from "./app.ts";
import tinyConfig from "../data/tiny_config.json" with { type: "json" };

const params = new URLSearchParams(location.search);

function pre(id: string): HTMLPreElement {
  const el = document.createElement("pre");
  el.id = id;
  document.body.append(el);
  return el;
}

async function runDemo(): Promise<void> {
  const view = new TrainingView(document.body);
  const log = pre("log");
  const print = (line: string) => {
    log.textContent += line + "\n";
    view.line(line);
  };
  memfs.mkdir("data", { recursive: true });
  memfs.writeFile("data/tiny_config.json", JSON.stringify(tinyConfig));
  const gpu = (navigator as { gpu?: unknown }).gpu !== undefined;
  const args = ["--json", "--backend", params.get("backend") ?? (gpu ? "webgpu" : "cpu")];
  for (const flag of ["train", "val", "test", "steps", "batch-size", "lr", "seed"]) {
    const v = params.get(flag);
    if (v !== null) args.push(`--${flag}`, v);
  }
  const lines: string[] = [];
  const code = await demoMain(args, (l) => {
    lines.push(l);
    print(l);
  });
  if (code !== 0) throw new Error(`the demo ended with status ${code}`);
  pre("result").textContent = lines[lines.length - 1] ?? "";
}

/** Fetch the fixture's files into the in-memory file system and run the parity check on them. */
async function runFixtureParity(name: string): Promise<void> {
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(name)) throw new Error(`Invalid ?parity=${name}: expected a fixture folder name`);
  const base = `fixtures/${name}/`;
  const list = await fetch(`${base}index.json`);
  if (!list.ok) throw new Error(`Cannot list ${base}: HTTP ${list.status}`);
  for (const file of await list.json() as string[]) {
    const res = await fetch(base + file);
    if (!res.ok) throw new Error(`Cannot fetch ${base}${file}: HTTP ${res.status}`);
    const path = `/${base}${file}`;
    memfs.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    memfs.writeFile(path, new Uint8Array(await res.arrayBuffer()));
  }
  const gpu = (navigator as { gpu?: unknown }).gpu !== undefined;
  const be = await createBackend(parseBackendName(params.get("backend") ?? (gpu ? "webgpu" : "cpu")));
  try {
    const r = await runParity(`/${base}`, be, "f32");
    pre("log").textContent = `backend: ${be.description}\n${formatParityTable(r)}`;
    pre("result").textContent = JSON.stringify(r);
  } finally {
    be.dispose();
  }
}

async function main(): Promise<void> {
  try {
    if (params.has("demo")) await runDemo();
    else if (params.has("parity")) await runFixtureParity(params.get("parity")!);
    else return await runApp(params.get("endpoint"));
    document.body.dataset.state = "done";
  } catch (e) {
    pre("error").textContent = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
    document.body.dataset.state = "error";
  }
}

main();
