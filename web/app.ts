/**
 * The interactive page: the chapter's steps on the reader's own model and data, each done by the same
 * library code as the CLI, in the in-memory file system (src/platform/browser/memfs.ts):
 *
 * 1. Model: a hub id fetched by the browser and kept in its storage, a kept one, or a local folder
 *    (web/model_source.ts).
 * 2. Data: the notebook's generated data or the reader's own JSONL (messages, ShareGPT, prompt/completion);
 *    the ChatML text and the loss-masking view of one example (`show-masking`'s `main`).
 * 3. Train: `trainMain` with the flags the form sets, the live loss curve and progress (web/training_view.ts);
 *    Stop sends SIGINT, which the loop answers as Ctrl-C: it finishes the step and saves a checkpoint; Resume
 *    runs `trainMain --resume` on it (as `deno task train --resume`).
 * 4. Evaluate: base vs SFT (`runEvaluation`): accuracy, the printout and the confusion view.
 * 5. Chat with the SFT model or the base (`ChatSession`, as `deno task chat`).
 * 6. Download the trained directory (the CLI's `--out`: the HF model directory, or the LoRA adapter) as a zip.
 *
 * Every control has an id the browser test drives (scripts/web_test.ts); each step's section gets
 * `data-state` "running", "done" or "error" (with the message in its `.error` element).
 * @module
 */

import { memfs } from "../src/platform/browser/memfs.ts";
import process, { setOutputSink } from "../src/platform/browser/process.ts";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import type { Backend } from "../src/backend/backend.ts";
import { trainMain } from "../src/cli/train.ts";
import { main as showMaskingMain } from "../src/cli/show_masking.ts";
import { ChatSession, DEFAULT_CHAT } from "../src/cli/chat_session.ts";
import { toMessages, writeDataset } from "../src/data/synth.ts";
import { formatChatml } from "../src/data/chatml.ts";
import { DATA_FORMATS } from "../src/data/formats.ts";
import { modelChatTemplate } from "../src/data/template.ts";
import { readSettings } from "../src/env.ts";
import { runEvaluation } from "../src/eval/run.ts";
import { confusionSvg, renderConsole } from "../src/eval/report.ts";
import { DEFAULT_MODEL } from "../src/io/hub.ts";
import { zipStored } from "../src/io/zip.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import { NOTEBOOK_TRAIN_CONFIG } from "../src/train/trainer.ts";
import { loadTaskRecords } from "../src/train/run.ts";
import {
  configureHub,
  fetchFromHub,
  keepModel,
  type ModelChoice,
  readLocalFolder,
  restoreStored,
} from "./model_source.ts";
import { listStored, loadStored, removeStored, storageAvailable, storageEstimate } from "./storage.ts";
import { TrainingView } from "./training_view.ts";

const DATA_DIR = "/data";
const RUN_DIR = "/runs/page";
const OUT_DIR = `${RUN_DIR}/model`;
const CHECKPOINT_DIR = `${RUN_DIR}/checkpoint`;
/** A checkpoint's files that are the optimizer's and the loop's, not the model's (left out of the zip). */
const CHECKPOINT_ONLY = new Set(["optimizer.safetensors", "trainer_state.json", "checkpoint_manifest.json"]);

/** What the page holds between steps. */
interface State {
  model?: ModelChoice;
  /** The reader's own data file in memory (else the notebook's). */
  trainFile?: string;
  testFile?: string;
  /** The trained directory, once training saved one. */
  trained?: string;
  /** The last run was stopped: its checkpoint can be resumed. */
  stopped?: boolean;
  /** The loaded chat model, by what it was loaded for (model, backend, decoding). */
  chat?: { key: string; session: ChatSession; be: Backend };
}

const state: State = {};

// ---------------------------------------------------------------------------------------------------------
// small DOM helpers

type Attrs = Record<string, string | number | boolean>;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "boolean") {
      if (v) e.setAttribute(k, "");
    } else e.setAttribute(k, String(v));
  }
  e.append(...children);
  return e;
}

function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`The page has no #${id}`);
  return e as T;
}

function field(label: string, input: HTMLElement): HTMLLabelElement {
  return el("label", {}, `${label} `, input);
}

function section(id: string, title: string, ...body: (Node | string)[]): HTMLElement {
  return el("section", { id }, el("h2", {}, title), ...body, el("pre", { class: "error" }));
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** A step is running (one at a time: they share the model, the backend and the files in memory). */
let busy = false;

/**
 * Run one step of the page: its section shows "running", then "done" or "error" with the message. While it
 * runs, every control but Stop is disabled and another step is refused.
 */
async function step(id: string, work: () => Promise<void> | void): Promise<void> {
  if (busy) return;
  busy = true;
  const sec = byId(id);
  const error = sec.querySelector(".error")!;
  error.textContent = "";
  sec.dataset.state = "running";
  for (const c of controls()) c.disabled = !c.classList.contains("always");
  try {
    await work();
    sec.dataset.state = "done";
  } catch (e) {
    error.textContent = e instanceof Error ? e.message : String(e);
    sec.dataset.state = "error";
    console.error(e);
  } finally {
    busy = false;
    for (const c of controls()) c.disabled = false;
    refresh();
  }
}

function controls(): (HTMLButtonElement | HTMLInputElement | HTMLSelectElement)[] {
  return [
    ...document.querySelectorAll<HTMLButtonElement | HTMLInputElement | HTMLSelectElement>("button, input, select"),
  ];
}

/** Between steps: enable the buttons whose step has what it needs. */
function refresh(): void {
  const need = (id: string, ok: boolean) => void (byId<HTMLButtonElement>(id).disabled = !ok);
  need("show-data", !!state.model);
  need("train-start", !!state.model);
  need("train-stop", false);
  need("train-resume", !!state.stopped);
  need("eval-start", !!state.trained);
  need("chat-send", !!state.model);
  need("download-zip", !!state.trained);
  byId("chosen").textContent = state.model ? `Model: ${state.model.label}` : "No model chosen yet.";
}

/** The flags every command gets for the chosen model: the hub id resolved offline from the page's cache. */
function modelFlags(): string[] {
  const m = state.model;
  if (!m) throw new Error("Choose a model first");
  return ["--model", m.spec, ...(m.hub ? ["--offline"] : [])];
}

/** The data flags: the reader's file, or the notebook's generated data in /data. */
async function dataFlags(): Promise<string[]> {
  if (byId<HTMLInputElement>("data-own").checked) {
    if (!state.trainFile) throw new Error("Choose a JSONL file of your training data (or the notebook's data)");
    return ["--train-file", state.trainFile, "--format", byId<HTMLSelectElement>("format").value];
  }
  if (!memfs.exists(`${DATA_DIR}/gpt2_sft_train.jsonl`)) {
    await writeDataset({ task: "classification", outDir: DATA_DIR });
  }
  const limit = byId<HTMLInputElement>("limit-train").value.trim();
  return ["--data-dir", DATA_DIR, ...(limit !== "" ? ["--limit-train", limit] : [])];
}

function backendName(): string {
  return byId<HTMLSelectElement>("backend").value;
}

// ---------------------------------------------------------------------------------------------------------
// 1. model

async function showStored(): Promise<void> {
  const list = byId("stored");
  list.replaceChildren();
  if (!await storageAvailable()) {
    list.append(el("li", {}, "This browser keeps no models (no origin private file system)."));
    const keep = byId<HTMLInputElement>("keep");
    keep.checked = false;
    keep.classList.add("unavailable");
    return;
  }
  let kept;
  try {
    kept = await listStored();
  } catch (e) {
    list.append(el("li", {}, `Cannot list the kept models: ${e instanceof Error ? e.message : e}`));
    return;
  }
  if (kept.length === 0) list.append(el("li", {}, "No models kept in this browser yet."));
  for (const m of kept) {
    const size = Object.values(m.files).reduce((a, b) => a + b, 0);
    const use = el("button", { class: "use" }, "Use");
    const remove = el("button", { class: "remove" }, "Remove");
    use.onclick = () =>
      step("model", async () => {
        status(`Reading ${m.id} from the browser's storage…`);
        choose(restoreStored(m, await loadStored(m)));
      });
    remove.onclick = () => step("model", () => removeStored(m).then(showStored));
    list.append(
      el("li", { "data-id": m.id }, `${m.id} · commit ${m.commit!.slice(0, 10)} · ${mib(size)} · `, use, " ", remove),
    );
  }
  const est = await storageEstimate();
  if (est) list.append(el("li", { class: "note" }, `Storage used: ${mib(est.usage)} of ${mib(est.quota)}`));
}

function status(text: string): void {
  byId("model-status").textContent = text;
}

/** Make `m` the page's model (its config read first, to say what it is); the previous one's files go. */
function choose(m: ModelChoice): void {
  const cfgPath = `${m.dir}/config.json`;
  const cfg = memfs.exists(cfgPath) ? JSON.parse(new TextDecoder().decode(memfs.readFile(cfgPath))) : undefined;
  const old = state.model;
  if (old && old.dir !== m.dir) {
    memfs.rm(old.hub ? old.dir.replace(/\/snapshots\/[^/]+$/, "") : old.dir, {
      recursive: true,
      force: true,
    });
  }
  memfs.rm(RUN_DIR, { recursive: true, force: true });
  state.model = m;
  state.trained = undefined;
  state.stopped = false;
  releaseChat();
  status(
    cfg
      ? `Ready: ${m.label}: ${cfg.n_layer} layers, n_embd ${cfg.n_embd}, vocabulary ${cfg.vocab_size}, ` +
        `${cfg.n_positions} positions`
      : `Ready: ${m.label} (a LoRA adapter)`,
  );
}

function modelSection(): HTMLElement {
  const hubId = el("input", { id: "hub-id", value: DEFAULT_MODEL, size: 40, spellcheck: false });
  const keep = el("input", { id: "keep", type: "checkbox", checked: true });
  const fetchButton = el("button", { id: "fetch" }, "Fetch from the hub");
  const folder = el("input", { id: "local-folder", type: "file", webkitdirectory: true, multiple: true });
  fetchButton.onclick = () =>
    step("model", async () => {
      const spec = hubId.value.trim();
      status(`Fetching ${spec}…`);
      const choice = await fetchFromHub(spec, (p) => {
        status(
          `Fetching ${spec}: ${p.file} ${mib(p.fileDone)} of ${mib(p.fileSize)} (all: ${mib(p.done)} of ${
            mib(p.total)
          })`,
        );
      });
      choose(choice);
      if (!keep.checked || keep.classList.contains("unavailable")) return;
      try {
        await keepModel(choice);
      } catch (e) {
        status(`${byId("model-status").textContent} — not kept: ${e instanceof Error ? e.message : e}`);
      }
      await showStored();
    });
  folder.onchange = () =>
    step("model", async () => {
      if (folder.files) choose(await readLocalFolder(folder.files));
    });
  return section(
    "model",
    "1. Model",
    el(
      "p",
      {},
      field("Hub id", hubId),
      " ",
      fetchButton,
      " ",
      field("keep it in this browser", keep),
    ),
    el("p", {}, field("or a local model folder", folder)),
    el("h3", {}, "Kept in this browser"),
    el("ul", { id: "stored" }),
    el("p", { id: "model-status", class: "status" }, "No model chosen yet."),
  );
}

// ---------------------------------------------------------------------------------------------------------
// 2. data and the masking view

function dataSection(): HTMLElement {
  const notebook = el("input", { id: "data-notebook", type: "radio", name: "data", checked: true });
  const own = el("input", { id: "data-own", type: "radio", name: "data" });
  const limit = el("input", { id: "limit-train", type: "number", min: 1, placeholder: "all 8000", size: 8 });
  const trainFile = el("input", { id: "train-file", type: "file", accept: ".jsonl,.json" });
  const testFile = el("input", { id: "test-file", type: "file", accept: ".jsonl,.json" });
  const format = el(
    "select",
    { id: "format" },
    ...DATA_FORMATS.map((f) => el("option", { value: f }, f)),
  );
  const put = async (input: HTMLInputElement, name: string) => {
    const f = input.files?.[0];
    if (!f) return undefined;
    memfs.mkdir(`${DATA_DIR}/own`, { recursive: true });
    const path = `${DATA_DIR}/own/${name}-${f.name.replace(/[^\w.-]/g, "_")}`;
    memfs.writeFile(path, new Uint8Array(await f.arrayBuffer()));
    own.checked = true;
    return path;
  };
  trainFile.onchange = () => step("data", async () => void (state.trainFile = await put(trainFile, "train")));
  testFile.onchange = () => step("data", async () => void (state.testFile = await put(testFile, "test")));
  const show = el("button", { id: "show-data" }, "Show the formatting and the loss mask");
  const index = el("input", { id: "example-index", type: "number", min: 0, value: 0, size: 5 });
  show.onclick = () =>
    step("data", async () => {
      const lines: string[] = [];
      const data = await dataFlags();
      // show-masking reads the records of --data-dir/--train-file as training does
      const args = [
        ...modelFlags(),
        ...data.filter((_, i) => data[i - 1] !== "--limit-train" && _ !== "--limit-train"),
      ];
      const html = `${RUN_DIR}/masking.html`;
      memfs.mkdir(RUN_DIR, { recursive: true });
      const code = await showMaskingMain(
        [...args, "--index", index.value || "0", "--html", html, "--no-color"],
        (l) => lines.push(l),
      );
      if (code !== 0) throw new Error(`show-masking ended with status ${code}`);
      // the notebook's record as the ChatML text it becomes, then show-masking's view of its tokens
      let chatml = "";
      if (!byId<HTMLInputElement>("data-own").checked) {
        const records = await loadTaskRecords("classification", DATA_DIR, "train");
        const record = records[Number(index.value) || 0];
        if (record) chatml = `ChatML text of train[${index.value || 0}]:\n${formatChatml(toMessages(record))}\n\n`;
      }
      byId("formatting").textContent = chatml + lines.filter((l) => !l.startsWith("Wrote ")).join("\n");
      // the step is done once the view is drawn (its load moves the page's layout)
      const frame = byId<HTMLIFrameElement>("masking");
      const loaded = new Promise<void>((ok) => {
        frame.onload = () => ok();
        setTimeout(ok, 10_000);
      });
      frame.srcdoc = new TextDecoder().decode(memfs.readFile(html));
      await loaded;
    });
  return section(
    "data",
    "2. Data",
    el(
      "p",
      {},
      el("label", {}, notebook, " the notebook's data (generated: 8000 train / 1000 val / 1000 test) "),
      field("records", limit),
    ),
    el(
      "p",
      {},
      el("label", {}, own, " your own JSONL: "),
      field("train", trainFile),
      " ",
      field("format", format),
      " ",
      field("test (optional, for the evaluation)", testFile),
    ),
    el("p", {}, show, " ", field("example", index)),
    el("pre", { id: "formatting" }),
    el("iframe", { id: "masking", title: "The loss-masking view", sandbox: "" }),
  );
}

// ---------------------------------------------------------------------------------------------------------
// 3. training

function trainSection(): HTMLElement {
  const d = NOTEBOOK_TRAIN_CONFIG;
  const num = (id: string, value: number | string, increment = "any") =>
    el("input", { id, type: "number", value, step: increment, min: 0, size: 8 });
  const backend = el(
    "select",
    { id: "backend" },
    ...["auto", "webgpu", "cpu"].map((b) => el("option", { value: b }, b)),
  );
  const inputs = {
    epochs: num("epochs", d.epochs, "1"),
    "max-steps": num("max-steps", d.maxSteps, "1"),
    "batch-size": num("batch-size", d.batchSize, "1"),
    lr: num("lr", d.lr),
    "warmup-steps": num("warmup-steps", d.warmupSteps, "1"),
    "max-length": num("max-length", d.maxLength, "1"),
  };
  const lora = el("input", { id: "lora", type: "checkbox" });
  const start = el("button", { id: "train-start" }, "Train");
  const stop = el("button", { id: "train-stop", class: "always" }, "Stop (saves a checkpoint)");
  const resume = el("button", { id: "train-resume" }, "Resume from the checkpoint");
  const log = el("pre", { id: "train-log" });
  const holder = el("div");
  let view: TrainingView | undefined;
  /** Run `deno task train`'s main with `argv`, its lines into the log and the training view. */
  const train = async (argv: string[]) => {
    releaseChat();
    log.textContent += `train ${argv.join(" ")}\n`;
    stop.disabled = false;
    state.stopped = false;
    state.trained = undefined;
    const code = await trainMain(argv, (line) => {
      log.textContent += line + "\n";
      view!.line(line);
    });
    if (code === 130) {
      // an interrupted run saves its checkpoint, not --out: the checkpoint is a model directory too
      state.stopped = true;
      state.trained = CHECKPOINT_DIR;
      log.textContent += "The stopped run's checkpoint is the model Evaluate, Chat and Download use; Resume " +
        "continues the run.\n";
    } else if (code !== 0) throw new Error(`Training ended with status ${code}`);
    else state.trained = OUT_DIR;
  };
  start.onclick = () =>
    step("train", async () => {
      holder.replaceChildren();
      view = new TrainingView(holder);
      log.textContent = "";
      const flags = Object.entries(inputs).flatMap(([k, input]) => [`--${k}`, input.value]);
      await train([
        ...modelFlags(),
        ...await dataFlags(),
        ...flags,
        ...(lora.checked ? ["--lora"] : []),
        "--backend",
        backendName(),
        "--out",
        OUT_DIR,
        "--run-dir",
        RUN_DIR,
        "--overwrite",
        "--log-every",
        "10",
      ]);
    });
  // the checkpoint holds the run's settings: only what may change on a resume is passed
  resume.onclick = () =>
    step("train", async () => {
      if (!view) view = new TrainingView(holder);
      const offline = state.model?.hub ? ["--offline"] : [];
      await train(["--resume", "--run-dir", RUN_DIR, "--backend", backendName(), "--log-every", "10", ...offline]);
    });
  // the loop listens for SIGINT once the model is loaded and the data tokenized: before that, Stop waits
  stop.onclick = () => {
    stop.disabled = true;
    if (!process.emit("SIGINT")) {
      log.textContent += "(training has not started its steps yet: press Stop again once it has)\n";
      stop.disabled = false;
    }
  };
  return section(
    "train",
    "3. Train",
    el(
      "p",
      { class: "form" },
      field("backend", backend),
      ...Object.entries(inputs).map(([k, input]) => field(k, input)),
      field("LoRA", lora),
    ),
    el("p", {}, start, " ", stop, " ", resume),
    holder,
    el("details", {}, el("summary", {}, "log"), log),
  );
}

// ---------------------------------------------------------------------------------------------------------
// 4. evaluation

function evalSection(): HTMLElement {
  const samples = el("input", { id: "max-samples", type: "number", min: 1, value: 200, size: 6 });
  const start = el("button", { id: "eval-start" }, "Evaluate base vs SFT");
  const report = el("pre", { id: "eval-report" });
  const confusion = el("div", { id: "confusion" });
  start.onclick = () =>
    step("eval", async () => {
      report.textContent = "";
      confusion.replaceChildren();
      releaseChat();
      if (!state.trained || !state.model) throw new Error("Train a model first");
      const own = byId<HTMLInputElement>("data-own").checked;
      if (own && !state.testFile) throw new Error("Choose a test file (same format as the training data) to evaluate");
      const settings = readSettings();
      const be = await createBackend(parseBackendName(backendName()), settings.backend);
      try {
        const result = await runEvaluation({
          sftDir: state.trained,
          model: state.model.spec,
          dataDir: DATA_DIR,
          ...(own ? { testFile: state.testFile } : {}),
          maxSamples: Number(samples.value) || null,
          backend: be,
          reportBase: `${RUN_DIR}/report`,
          hub: { env: settings.hub, offline: state.model.hub || undefined },
          progress: "lines",
          print: (l) => (report.textContent += l + "\n"),
          warn: (m) => (report.textContent += `warning: ${m}\n`),
        });
        const r = result.report;
        report.textContent += "\n" + renderConsole(r, { color: false });
        const sec = byId("eval");
        sec.dataset.sftAccuracy = String(r.sft.overall.accuracy);
        if (r.base) sec.dataset.baseAccuracy = String(r.base.overall.accuracy);
        const svg = confusionSvg(r);
        if (svg) confusion.innerHTML = svg;
      } finally {
        be.dispose();
      }
    });
  return section(
    "eval",
    "4. Evaluate",
    el("p", {}, field("test examples", samples), " ", start),
    confusion,
    report,
  );
}

// ---------------------------------------------------------------------------------------------------------
// 5. chat

function releaseChat(): void {
  state.chat?.session.model.dispose();
  state.chat?.be.dispose();
  state.chat = undefined;
}

function chatSection(): HTMLElement {
  const which = el(
    "select",
    { id: "chat-which" },
    el("option", { value: "sft" }, "the SFT model"),
    el("option", { value: "base" }, "the base model"),
  );
  const greedy = el("input", { id: "chat-greedy", type: "checkbox", checked: true });
  const input = el("input", { id: "chat-input", size: 60, placeholder: "a message" });
  const send = el("button", { id: "chat-send" }, "Send");
  const log = el("div", { id: "chat-log" });
  send.onclick = () =>
    step("chat", async () => {
      const text = input.value.trim();
      if (text === "") return;
      const spec = which.value === "sft" ? state.trained : state.model?.spec;
      if (!spec) {
        throw new Error(which.value === "sft" ? "Train a model first (or chat with the base)" : "Choose a model");
      }
      const key = `${spec} ${backendName()} ${greedy.checked}`;
      if (state.chat?.key !== key) {
        releaseChat();
        const settings = readSettings();
        const be = await createBackend(parseBackendName(backendName()), settings.backend);
        let loaded: Awaited<ReturnType<typeof loadModelAndTokenizer>> | undefined;
        try {
          loaded = await loadModelAndTokenizer(spec, be, {
            prepare: false,
            hub: { env: settings.hub, offline: state.model?.hub || undefined },
            warn: () => {},
          });
          const template = await modelChatTemplate(loaded.tokenizerDir);
          const settingsOfChat = { ...DEFAULT_CHAT, greedy: greedy.checked };
          state.chat = { key, session: new ChatSession(loaded.model, loaded.tokenizer, template, settingsOfChat), be };
        } catch (e) {
          loaded?.model.dispose();
          be.dispose();
          throw e;
        }
      }
      const reply = el("p", { class: "assistant" });
      log.append(el("p", { class: "user" }, text), reply);
      input.value = "";
      const turn = await state.chat!.session.send(text, (shown) => (reply.textContent = shown));
      reply.textContent = turn.shown;
      reply.dataset.text = turn.text;
    });
  input.onkeydown = (e) => {
    if (e.key === "Enter" && !send.disabled) send.click();
  };
  return section(
    "chat",
    "5. Chat",
    el("p", {}, field("with", which), " ", field("greedy", greedy)),
    log,
    el("p", {}, input, " ", send),
  );
}

// ---------------------------------------------------------------------------------------------------------
// 6. download

function downloadSection(): HTMLElement {
  const button = el("button", { id: "download-zip" }, "Download the trained model (zip)");
  const note = el("p", { id: "download-note", class: "status" });
  button.onclick = () =>
    step("download", () => {
      if (!state.trained) throw new Error("Train a model first");
      // the directory as training wrote it (of a stopped run's checkpoint, the model's files)
      const files = new Map(
        [...memfs.files(state.trained, { copy: false })].filter(([name]) => !CHECKPOINT_ONLY.has(name)),
      );
      const blob = new Blob(zipStored(files) as BlobPart[], { type: "application/zip" });
      const name = `${(state.model?.spec ?? "model").split("/").pop()!.replace(/[^\w.-]/g, "_")}-sft.zip`;
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      note.textContent = `${name}: ${[...files.keys()].sort().join(", ")} (${mib(blob.size)})`;
    });
  return section("download", "6. Download", el("p", {}, button), note);
}

// ---------------------------------------------------------------------------------------------------------

/** Build the page; `endpoint` is the hub's address (`?endpoint=`; default huggingface.co). */
export async function runApp(endpoint: string | null): Promise<void> {
  configureHub(endpoint);
  const log = el("pre", { id: "log" });
  setOutputSink((_stream, text) => (log.textContent += text));
  const gpu = (navigator as { gpu?: unknown }).gpu !== undefined;
  document.body.append(
    el("h1", {}, "GPT-2 SFT in the browser"),
    el(
      "p",
      {},
      "The chapter's steps on your model and data: everything runs in this tab (",
      gpu ? "WebGPU is available" : "no WebGPU here: the CPU backend",
      "); nothing leaves the browser but the hub's downloads.",
    ),
    el("p", { id: "chosen", class: "status" }),
    modelSection(),
    dataSection(),
    trainSection(),
    evalSection(),
    chatSection(),
    downloadSection(),
    el("details", {}, el("summary", {}, "messages"), log),
  );
  refresh();
  await showStored();
  document.body.dataset.state = "ready";
}
