/**
 * The browser test: builds and serves the page (scripts/web_serve.ts), opens it in Chromium through
 * playwright-core (headless, WebGPU on SwiftShader: `--enable-unsafe-webgpu`), and checks:
 * - `/?demo=1&backend=cpu`: the whole offline demo in the page (the same `demoMain` as `deno task demo`)
 *   writes the demo's JSON into `<pre id="result">`, with ≥ 95 % accuracy on the 200 test examples;
 * - `/?demo=1` (WebGPU): a short run of the same demo (2 steps on 32 records: SwiftShader takes seconds
 *   per step) ends on the WebGPU backend with the final loss of the same short run on the CPU backend.
 * - the training view: a screenshot of it (runs/web/training.png), decoded by the browser, shows the loss
 *   curve's colour;
 * - `/?parity=tiny-gpt2-zh&backend=cpu` and (after the WebGPU demo) `&backend=webgpu`: the parity check against the
 *   PyTorch fixture, in the page, passes;
 * - `/` (the interactive page): scripts/web_test_app.ts.
 * Under CI=true a missing browser or WebGPU adapter fails the test; otherwise it is skipped with a note.
 *
 * Usage: `deno task test:web [--only app]` (CHROMIUM=path picks the browser; default /usr/bin/chromium;
 * `--only app` runs the interactive page's part alone)
 * @module
 */

import { existsSync } from "node:fs";
import process from "node:process";
import { chromium, type Page } from "playwright-core";
import { mkdir, writeFile } from "node:fs/promises";
import { serveWeb } from "./web_serve.ts";
import { stopBuilds } from "./web_build.ts";
import { countPixels, testInteractivePage } from "./web_test_app.ts";

const EXECUTABLE = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CI = (process.env.CI ?? "") !== "";
const ARGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--no-sandbox"];
const SHORT = "&steps=2&train=32&val=2&test=2";
const ONLY_APP = process.argv.slice(2).join(" ") === "--only app";

interface DemoJson {
  accuracy: number;
  final_loss: number | null;
  backend: string;
  seconds: number;
  test_examples: number;
}

/** Thrown to end the checks early (`--only app`). */
class Stop extends Error {}

let failures = 0;
function check(ok: boolean, what: string): void {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

function skipOrFail(reason: string): never {
  if (CI) {
    console.error(`FAIL web: ${reason} (CI=true: the browser test does not skip)`);
    process.exit(1);
  }
  console.log(`skip web: ${reason}`);
  process.exit(failures === 0 ? 0 : 1);
}

/** The parity check against the tiny fixture, in the page, on `backend`: every check must pass. */
async function parityInPage(page: Page, url: string, backend: string, timeoutMs: number): Promise<void> {
  const t = performance.now();
  await page.goto(`${url}?parity=tiny-gpt2-zh&backend=${backend}`);
  await page.waitForSelector("body[data-state]", { state: "attached", timeout: timeoutMs });
  const text = await page.evaluate(() => document.getElementById("result")?.textContent ?? "");
  const parity = text === "" ? undefined : JSON.parse(text) as { ok: boolean; checks: { ok: boolean }[] };
  check(
    parity?.ok === true && parity.checks.length > 0,
    `parity, tiny-gpt2-zh, backend=${backend}: ${
      parity
        ? `${parity.checks.filter((c) => c.ok).length}/${parity.checks.length} checks`
        : await page.evaluate(() => document.getElementById("error")?.textContent ?? "no result")
    }, ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
}

/** Open `query` and wait for the page to finish; returns the demo's JSON. */
async function runDemo(page: Page, url: string, query: string, timeoutMs: number): Promise<DemoJson> {
  await page.goto(`${url}?${query}`);
  await page.waitForSelector("body[data-state]", { state: "attached", timeout: timeoutMs });
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state !== "done") {
    throw new Error(`?${query}: ${await page.evaluate(() => document.getElementById("error")?.textContent ?? "")}`);
  }
  const text = await page.evaluate(() => document.getElementById("result")?.textContent ?? "");
  return JSON.parse(text) as DemoJson;
}

if (!existsSync(EXECUTABLE)) skipOrFail(`no browser at ${EXECUTABLE}`);
const t0 = performance.now();
const server = await serveWeb({ port: 0 });
await stopBuilds();
const browser = await chromium.launch({ executablePath: EXECUTABLE, args: ARGS, headless: true });
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto(server.url);
  const adapter = await page.evaluate(async () => {
    const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    return gpu ? (await gpu.requestAdapter()) !== null : false;
  });

  if (ONLY_APP) {
    await testInteractivePage(await browser.newPage(), server.url, check);
    throw new Stop();
  }
  const cpu = await runDemo(page, server.url, "demo=1&backend=cpu", 150_000);
  check(cpu.backend === "cpu", `demo, backend=cpu: ran on "${cpu.backend}"`);
  check(
    cpu.accuracy >= 0.95 && cpu.test_examples === 200,
    `demo, backend=cpu: accuracy ${(100 * cpu.accuracy).toFixed(1)} % on ${cpu.test_examples} test examples ` +
      `(≥ 95 %), ${cpu.seconds.toFixed(1)} s in the page`,
  );

  // the training view after the run: a screenshot, decoded by the browser, has the curve's colour
  const png = await page.locator("#training").screenshot();
  await mkdir("runs/web", { recursive: true });
  await writeFile("runs/web/training.png", png);
  const curvePixels = await countPixels(page, png, [214, 39, 40]); // #d62728
  const progress = await page.evaluate(() => document.getElementById("progress")?.textContent ?? "");
  check(
    curvePixels >= 200,
    `training view: ${curvePixels} pixels of the loss curve's colour in the screenshot (≥ 200)`,
  );
  check(/^step \d+ of 125 · loss [\d.]+ · [\d,]+ tokens\/s · ETA/.test(progress), `training view: "${progress}"`);

  await parityInPage(page, server.url, "cpu", 120_000);

  await testInteractivePage(await browser.newPage(), server.url, check);

  if (!adapter) skipOrFail("the browser offers no WebGPU adapter");
  const cpuShort = await runDemo(page, server.url, `demo=1&backend=cpu${SHORT}`, 60_000);
  const gpu = await runDemo(page, server.url, `demo=1${SHORT}`, 240_000);
  check(gpu.backend === "webgpu", `demo on WebGPU (short run): ran on "${gpu.backend}"`);
  const a = gpu.final_loss ?? NaN, e = cpuShort.final_loss ?? NaN;
  // two AdamW steps from the same weights: float32 sums in another order, well inside 1e-3
  check(
    Math.abs(a - e) <= 1e-3 * Math.abs(e),
    `demo on WebGPU (short run): final loss ${a} vs the CPU's ${e} (relative 1e-3), ${gpu.seconds.toFixed(1)} s`,
  );
  await parityInPage(page, server.url, "webgpu", 300_000);
} catch (e) {
  if (!(e instanceof Stop)) throw e;
} finally {
  await browser.close();
  await server.close();
}
console.log(
  `web: ${failures === 0 ? "passed" : `${failures} failed`} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
process.exit(failures === 0 ? 0 : 1);
