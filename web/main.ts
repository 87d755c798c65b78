/**
 * The browser page's entry: `?demo=1` runs the offline demo, `?parity=1` the parity check against a
 * fixture the server serves; otherwise the interactive page.
 * @module
 */

import "../src/platform/browser/globals.ts";
import { demoMain } from "../demo.ts";
import { memfs } from "../src/platform/browser/memfs.ts";
import tinyConfig from "../data/tiny_config.json" with { type: "json" };

const params = new URLSearchParams(location.search);

function pre(id: string): HTMLPreElement {
  const el = document.createElement("pre");
  el.id = id;
  document.body.append(el);
  return el;
}

async function runDemo(): Promise<void> {
  const log = pre("log");
  const print = (line: string) => {
    log.textContent += line + "\n";
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

async function main(): Promise<void> {
  try {
    if (params.has("demo")) await runDemo();
    else document.body.append("The interactive page is not built yet: ?demo=1 runs the demo.");
    document.body.dataset.state = "done";
  } catch (e) {
    pre("error").textContent = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
    document.body.dataset.state = "error";
  }
}

main();
