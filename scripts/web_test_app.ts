/**
 * The browser test of the interactive page (web/app.ts), driven as a reader would: a tiny GPT-2 (the demo's
 * model, random weights, saved untrained) is served by a fake hub on another origin (tests/helpers/fake_hub.ts,
 * answering with the hub's CORS headers); the page fetches it by id and keeps it in the browser's storage,
 * shows the masking view of the notebook's data, trains on the CPU backend, evaluates base vs SFT (≥ 95 %,
 * with the confusion view), chats, downloads the model as a zip,
 * which is unpacked here and must load and answer the chat message as the page did, and stops a second run
 * (a checkpoint) and resumes it to its end. Then, with the hub gone,
 * the kept model is used again after a reload, and a local folder is read.
 * @module
 */

import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { createBackend } from "../src/backend/mod.ts";
import { ChatSession, DEFAULT_CHAT } from "../src/cli/chat_session.ts";
import { generateClassificationRecords } from "../src/data/synth.ts";
import { modelChatTemplate } from "../src/data/template.ts";
import { tinyModel } from "../src/demo/tiny.ts";
import { readZipDirectory, readZipEntry } from "../src/io/zip.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import { saveSftModel } from "../src/train/run.ts";
import { startFakeHub } from "../tests/helpers/fake_hub.ts";
import { ROOT } from "./web_build.ts";

const REPO = "demo/tiny-gpt2-zh";
const WORK = join(ROOT, "runs/web/app");

/** Pixels of a screenshot within 12 of `rgb` in each channel, counted by the browser's own PNG decoder. */
export async function countPixels(page: Page, png: Uint8Array, rgb: [number, number, number]): Promise<number> {
  const b64 = btoa(Array.from(png, (b) => String.fromCharCode(b)).join(""));
  return await page.evaluate(async ([b64, [r, g, b]]) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext("2d")!;
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i]! - r) < 12 && Math.abs(d[i + 1]! - g) < 12 && Math.abs(d[i + 2]! - b) < 12) n++;
    }
    return n;
  }, [b64, rgb] as const);
}

/** The demo's tiny model, untrained, as a model directory (the hub's copy). */
async function tinyBase(dir: string): Promise<void> {
  const be = await createBackend("cpu");
  try {
    const { model, tokenizer } = await tinyModel(be, {
      configPath: join(ROOT, "data/tiny_config.json"),
      records: generateClassificationRecords(2000, 42),
      seed: 0,
    });
    await saveSftModel(dir, { model, tokenizer, extraFiles: tokenizer.saveFiles() });
    model.dispose();
  } finally {
    be.dispose();
  }
}

/** Click `selector`, scrolled into view first (a click that had to scroll the long page itself was seen to miss). */
async function press(page: Page, selector: string): Promise<void> {
  await page.locator(selector).scrollIntoViewIfNeeded();
  await page.click(selector);
}

/** Wait until the section's step is done or failed; on a timeout, say what the section shows. */
async function finished(page: Page, sectionId: string, timeout: number): Promise<void> {
  try {
    await page.waitForSelector(`#${sectionId}[data-state="done"], #${sectionId}[data-state="error"]`, { timeout });
  } catch (e) {
    const text = await page.evaluate((id) => document.getElementById(id)?.innerText ?? "", sectionId);
    throw new Error(`#${sectionId} did not finish in ${timeout / 1000} s; it shows:\n${text.slice(-3000)}`, {
      cause: e,
    });
  }
}

/** Click `button` and wait for its section to finish; returns the section's state and error text. */
async function act(page: Page, button: string, sectionId: string, timeout: number): Promise<string> {
  await press(page, button);
  await finished(page, sectionId, timeout);
  const state = await page.getAttribute(`#${sectionId}`, "data-state");
  if (state === "done") return "";
  return (await page.textContent(`#${sectionId} .error`)) ?? "error";
}

/** Wait for a section to finish after something other than a click started it. */
async function settled(page: Page, sectionId: string, timeout: number): Promise<string> {
  await finished(page, sectionId, timeout);
  return (await page.getAttribute(`#${sectionId}`, "data-state")) === "done"
    ? ""
    : (await page.textContent(`#${sectionId} .error`)) ?? "error";
}

/** Run the interactive page's test on `page` (a fresh context) served at `url`. */
export async function testInteractivePage(
  page: Page,
  url: string,
  check: (ok: boolean, what: string) => void,
): Promise<void> {
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await rm(WORK, { recursive: true, force: true });
  const base = join(WORK, "base");
  await tinyBase(base);
  const hub = await startFakeHub({ repos: { [REPO]: base }, cors: true });
  let hubOpen = true;
  try {
    const t0 = performance.now();
    const open = async () => {
      await page.goto(`${url}?endpoint=${encodeURIComponent(hub.url)}`);
      await page.waitForSelector("body[data-state=ready]", { timeout: 30_000 });
    };
    await open();
    await page.fill("#hub-id", REPO);
    let err = await act(page, "#fetch", "model", 60_000);
    const kept = await page.locator(`#stored li[data-id="${REPO}"]`).count();
    check(err === "" && kept === 1, `page: ${REPO} fetched from the fake hub (CORS) and kept in the browser ${err}`);
    if (err !== "") return;

    await page.fill("#limit-train", "2000");
    err = await act(page, "#show-data", "data", 60_000);
    const srcdoc = (await page.getAttribute("#masking", "srcdoc")) ?? "";
    const formatting = (await page.textContent("#formatting")) ?? "";
    check(
      err === "" && srcdoc.includes('class="tok sup"') && srcdoc.includes('class="tok mask"') &&
        formatting.includes("<|im_start|>assistant\n") && formatting.includes("Loss computed on:"),
      `page: the ChatML formatting and the masking view of the notebook's data ${err}` +
        (err === "" && !formatting.includes("Loss computed on:")
          ? `\n${formatting.slice(0, 400)}\n${srcdoc.slice(0, 200)}`
          : ""),
    );

    // the demo's settings: a tiny model from scratch, on the CPU backend (SwiftShader takes seconds a step)
    const settings: Record<string, string> = {
      "#epochs": "1",
      "#max-steps": "125",
      "#batch-size": "16",
      "#lr": "3e-3",
      "#warmup-steps": "20",
      "#max-length": "192",
    };
    for (const [sel, v] of Object.entries(settings)) await page.fill(sel, v);
    await page.selectOption("#backend", "cpu");
    err = await act(page, "#train-start", "train", 300_000);
    const progress = (await page.textContent("#progress")) ?? "";
    check(
      err === "" && /^step 125 of 125 · loss [\d.]+ · [\d,]+ tokens\/s/.test(progress),
      `page: trained, "${progress}" ${err}`,
    );
    if (err !== "") return;

    err = await act(page, "#eval-start", "eval", 120_000);
    const acc = Number(await page.getAttribute("#eval", "data-sft-accuracy"));
    const baseAcc = Number(await page.getAttribute("#eval", "data-base-accuracy"));
    const svg = await page.locator("#confusion svg").count();
    // the confusion view as the reader sees it: the SFT panel's diagonal is #2e7d32
    const green = svg === 1 ? await countPixels(page, await page.locator("#confusion").screenshot(), [46, 125, 50]) : 0;
    check(
      err === "" && acc >= 0.95 && green >= 2000,
      `page: evaluation base ${(100 * baseAcc).toFixed(1)} % → SFT ${(100 * acc).toFixed(1)} % (≥ 95 %), ` +
        `confusion view: ${green} pixels of the diagonal's green (≥ 2000) ${err}`,
    );

    await page.screenshot({ path: join(WORK, "page.png"), fullPage: true });
    const message = generateClassificationRecords(1, 44)[0]!.instruction;
    await page.fill("#chat-input", message);
    err = await act(page, "#chat-send", "chat", 60_000);
    const reply = (await page.getAttribute("#chat-log .assistant", "data-text")) ?? "";
    check(err === "" && reply !== "", `page: chat reply "${reply}" ${err}`);

    const downloading = page.waitForEvent("download", { timeout: 60_000 }).catch(() => undefined);
    err = await act(page, "#download-zip", "download", 60_000);
    const download = await downloading;
    check(err === "" && download !== undefined, `page: the download ${download?.suggestedFilename()} ${err}`);
    if (!download) return;
    const zipPath = join(WORK, "model.zip");
    await download.saveAs(zipPath);
    const zip = new Uint8Array(await readFile(zipPath));
    const entries = readZipDirectory(zip, zipPath);
    const names = [...entries.keys()].sort();
    const unpacked = join(WORK, "downloaded");
    await mkdir(unpacked, { recursive: true });
    for (const [name, e] of entries) await writeFile(join(unpacked, name), readZipEntry(zip, e, zipPath));
    const need = ["config.json", "model.safetensors", "sft_task.json", "tokenizer_config.json", "vocab.txt"];
    check(need.every((n) => names.includes(n)), `page: the zip holds ${names.join(", ")}`);
    const be = await createBackend("cpu");
    try {
      const { model, tokenizer, tokenizerDir } = await loadModelAndTokenizer(unpacked, be, {
        prepare: false,
        warn: () => {},
      });
      const chat = new ChatSession(model, tokenizer, await modelChatTemplate(tokenizerDir), {
        ...DEFAULT_CHAT,
        greedy: true,
      });
      const here = (await chat.send(message)).text;
      check(here === reply, `page: the downloaded model answers "${here}" here, as in the page`);
      model.dispose();
    } finally {
      be.dispose();
    }

    // Stop: a longer run is interrupted, the loop finishes its step and saves a checkpoint; Resume continues it
    await page.fill("#max-steps", "160");
    await page.fill("#epochs", "3");
    await press(page, "#train-start");
    await page.waitForFunction(() => /^step [1-9]\d* of/.test(document.getElementById("progress")?.textContent ?? ""), {
      timeout: 60_000,
    });
    await press(page, "#train-stop");
    err = await settled(page, "train", 60_000);
    let log = (await page.textContent("#train-log")) ?? "";
    const stoppedAt = /Stopped at step (\d+); checkpoint saved/.exec(log)?.[1];
    check(
      err === "" && log.includes("Interrupted: finishing this step and saving a checkpoint") &&
        stoppedAt !== undefined && await page.isEnabled("#eval-start") && await page.isEnabled("#download-zip"),
      `page: Stop ends the run at step ${stoppedAt} with a checkpoint, which Evaluate and Download use ${err}`,
    );
    err = await act(page, "#train-resume", "train", 120_000);
    log = (await page.textContent("#train-log")) ?? "";
    const resumed = /Resumed from \S+ at step (\d+)/.exec(log);
    const after = (await page.textContent("#progress")) ?? "";
    check(
      err === "" && resumed !== null && Number(resumed[1]) > 0 && Number(resumed[1]) < 160 &&
        /^step 160 of 160/.test(after),
      `page: Resume continues from step ${resumed?.[1]} to "${after}" ${err}`,
    );
    console.log(`  (page steps took ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

    // the kept model, with no hub: after a reload it is read back from the browser's storage
    await hub.close();
    hubOpen = false;
    await open();
    err = await act(page, `#stored li[data-id="${REPO}"] .use`, "model", 30_000);
    const status = (await page.textContent("#model-status")) ?? "";
    check(err === "" && status.includes("kept in this browser"), `page: with the hub gone, "${status}" ${err}`);
    err = await act(page, "#show-data", "data", 60_000);
    check(err === "", `page: the kept model's tokenizer works offline ${err}`);

    await page.setInputFiles("#local-folder", unpacked);
    err = await settled(page, "model", 30_000);
    const local = (await page.textContent("#model-status")) ?? "";
    check(err === "" && local.includes("the local folder downloaded"), `page: a local folder, "${local}" ${err}`);
  } finally {
    if (hubOpen) await hub.close();
  }
}
