/**
 * The benchmark harness: matmul GFLOP/s at GPT-2's shapes, one full training step of the real GPT-2 shape
 * (forward + masked cross-entropy + backward + AdamW with clipping), peak memory, and the label classifier
 * against the notebook's (`bench/classify.ts`), on one backend.
 *
 * Usage (Deno or Bun; see bench/README.md):
 *   deno task bench [--backend auto|cpu|webgpu] [--json] [--quick] [--steps N] [--warmup N] [--seq T]
 *                   [--batch B] [--layers L] [--only PART[,PART…]] [--all-layouts] [--no-dropout]
 *                   [--classify-n N] [--classify-shape tiny|gpt2] [--matmul-kernels tiled,large,…]
 *                   [--flush-every N] [--no-flush-ramp] [--profile] [--size NAME] [--gradient-checkpointing]
 *                   [--lora] [--lora-r R]
 *   bun bench/bench.ts …the same flags…
 * PART: matmul, step, dispatch, classify, generate, tta (default: all of them).
 * `--lora`: the step trains training's default LoRA adapter (r 8 or `--lora-r`, every Conv1D, the SFT tokens'
 * embedding rows) on the frozen base instead of every parameter.
 *
 * Matmul: M = B·T rows (default 4·256 = 1024) times each of GPT-2's weights: c_attn 768×2304, c_fc 768×3072,
 * mlp c_proj 3072×768, attn c_proj 768×768 (forward layout A·B, with bias), the tied LM head A·Bᵀ with
 * wte [21128,768], and the two backward layouts of c_fc (dx = dy·Wᵀ, dW = xᵀ·dy, both accumulating). Each
 * case is warmed up once (pipeline creation), timed once to size the repetitions, then run in groups of
 * back-to-back calls, each group closed by `backend.sync()` and timed on the host; the figure is the median
 * group's time per call. On WebGPU that includes one submit-and-wait per group, amortised over the group.
 *
 * Step: `GPT2.random` with vocab 21128 + 63 SFT tokens = 21191, n_positions 1024, n_embd 768, 12 layers,
 * 12 heads (~102 M parameters), a [B,T] batch of random token ids with labels on the last 8 positions of
 * each row (like the classification task), `model.loss(batch, { backward: true })` + `AdamW.step` (lr 5e-5,
 * weight decay 0.01, clip 1.0), then `sync()`. The first `--warmup` steps are not timed; the figure is the
 * median of the `--steps` timed ones. Training mode: dropout 0.1 at HF's three sites (embeddings, attention
 * probabilities, residual branches), as PyTorch's `model.train()` with the default config; `--no-dropout` drops it.
 *
 * Peak memory: WebGPU, the bytes of GPU buffers the step's backend holds (its pool only grows, so this
 * is the high-water mark); CPU, the process's peak resident set (VmHWM where Linux reports it, else the
 * largest `process.memoryUsage().rss` sampled).
 *
 * `--matmul-kernels` (WebGPU) times the matmuls once per kernel named (kernels/matmul_*.wgsl; "auto", the
 * unmeasured per-product heuristic, is accepted here only); the step and the classifier run the default
 * kernel, or the one `GPT2_SFT_MATMUL` names.
 *
 * `--flush-every N` (1 … 256, default 256) and `--no-flush-ramp` (WebGPU) set the backend's submit batching
 * (`WebGpuBackendOptions.flushEvery`, `.flushRamp`), which only this harness changes: `bench/gpu_check.sh`
 * times both against the defaults.
 *
 * Classifier: `--classify-n` test prompts (default 100) × the six labels, scored the notebook's way (one full
 * forward per label) and ours (prefix shared, KV cache, batched), on the demo's tiny model or, with
 * `--classify-shape gpt2`, random weights of the real shape.
 *
 * Generation (`generate`): evaluation's greedy generation (bench/generate.ts) of 16 extraction prompts (4 with
 * `--quick`) × 32 new tokens, one prompt at a time and 16 rows batched, on the classifier's model.
 *
 * Time to accuracy (`tta`): `bench/time_to_accuracy.ts --pad both` on the same backend (the tiny demo model until
 * 99 %; with `--quick` only 20 steps), its summary and ratio in the JSON.
 *
 * With `--json` the last line printed is one JSON object holding every figure.
 * @module
 */

import { estimateTrainingMemory } from "../src/train/memory.ts";
import { adapterSize, DEFAULT_LORA, type LoraSpec, loraSpecOf } from "../src/model/lora.ts";
import { readFileSync } from "node:fs";
import process from "node:process";
import {
  type Backend,
  type BackendName,
  type BackendOptions,
  createBackend,
  opProfiler,
  parseBackendName,
} from "../src/backend/mod.ts";
import { choiceFlag, numberFlag, parseFlags, runMain, runtimeName } from "../src/cli/args.ts";
import { benchClassifier, type ClassifierResult } from "./classify.ts";
import { benchGeneration, type GenerationResult } from "./generate.ts";
import { timeToAccuracyMain } from "./time_to_accuracy.ts";
import {
  ALL_MATMUL_KERNELS,
  type MatmulKernel,
  parseFlushEvery,
  parseMatmulKernel,
  WebGpuBackend,
} from "../src/backend/webgpu.ts";
import { backendSettings } from "../src/env.ts";
import { formatProfile, type KernelTime } from "../src/backend/profile.ts";
import { formatTuning, type TunedShape } from "../src/backend/matmul_tuner.ts";
import { type GPT2Config, parseConfig } from "../src/model/config.ts";
import { type Batch, GPT2, normalRng } from "../src/model/gpt2.ts";
import { AdamW } from "../src/train/adamw.ts";

/** The base model's vocabulary (BertTokenizer of uer/gpt2-chinese-cluecorpussmall). */
const BASE_VOCAB = 21128;
/** Tokens the notebook adds for SFT (ChatML markers, pad, …): 21128 + 63 = 21191. */
const SFT_TOKENS = 63;
/** Supervised label positions at the end of each row (a short answer, as in the classification task). */
const SUPERVISED_TAIL = 8;
/** The notebook's optimizer settings. */
const LR = 5e-5, WEIGHT_DECAY = 0.01, MAX_GRAD_NORM = 1.0;

/** Storage layout of a matmul: `AB` out = a·b; `AtB` out = aᵀ·b (a stored [K,M]); `ABt` out = a·bᵀ (b stored [N,K]). */
type Layout = "AB" | "AtB" | "ABt";

/** One matmul to time. */
interface MatmulCase {
  /** Which GPT-2 product: "c_attn", "c_fc", "mlp.c_proj", "attn.c_proj", "lm_head". */
  shape: string;
  /** What it is in training: "forward", "backward dx", "backward dW". */
  role: string;
  layout: Layout;
  M: number;
  N: number;
  K: number;
  bias: boolean;
  accumulate: boolean;
}

/** One timed matmul, as reported. */
interface MatmulResult {
  shape: string;
  role: string;
  layout: Layout;
  /** The product as text, e.g. "1024x768 · 768x2304". */
  dims: string;
  M: number;
  N: number;
  K: number;
  /** Median milliseconds per call. */
  ms: number;
  /** 2·M·N·K / time. */
  gflops: number;
  /** Calls timed (after the warm-up and sizing calls). */
  reps: number;
  /** The WebGPU matmul kernel (`--matmul-kernels`); absent on the CPU. */
  kernel?: string;
}

/** The training-step figures, as reported. */
interface StepResult {
  B: number;
  T: number;
  layers: number;
  params: number;
  /** Dropout rate of the step (0.1 as PyTorch's `model.train()` with HF's default config; 0 with --no-dropout). */
  dropout: number;
  /** Median milliseconds per timed step. */
  ms: number;
  /** Every timed step, in order. */
  ms_each: number[];
  warmup_ms: number[];
  tokens_per_s: number;
  /** Supervised (loss) tokens per batch. */
  supervised: number;
  /** Model FLOPs of one step as counted by {@link stepFlops} (GFLOP). */
  gflop: number;
  /** gflop / median time. */
  gflops: number;
  /** Loss of the first and the last step (a sanity check: ≈ ln V ≈ 9.96 at random init). */
  loss_first: number;
  loss_last: number;
  /**
   * Median milliseconds the host spent recording a step (forward, backward and AdamW calls returned,
   * before `sync()`). On the CPU backend the work runs inside the calls, so this is most of the step; on
   * WebGPU it is the host's cost per step, overlapped with the GPU's work.
   */
  host_ms: number;
  /**
   * WebGPU, without `--profile`, with ≥ 2 steps: milliseconds per step when `steps` more steps run back to back
   * with one `sync()` at the end, as the trainer runs them (`ms` syncs after every step, as the notebook's loop
   * does with `loss.item()`).
   */
  back_to_back_ms?: number;
  /** WebGPU: compute dispatches and command-buffer submits per step. */
  dispatches?: number;
  submits?: number;
  /** WebGPU with `--profile`: GPU milliseconds per kernel, per step (mean of the timed steps). */
  profile?: KernelTime[];
  /** WebGPU with `GPT2_SFT_MATMUL=tune`: each product shape's candidates and choice. */
  matmul_tuning?: TunedShape[];
}

function now(): number {
  return performance.now();
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Random floats N(0, 0.02²), like weights and small activations. */
function randomArray(n: number, rng: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng() * 0.02;
  return a;
}

/** GPT-2's products for M rows (C = 768, V = 21128); `allLayouts` adds both backward layouts for every weight. */
function matmulCases({ M, C, allLayouts }: { M: number; C: number; allLayouts: boolean }): MatmulCase[] {
  const weights: [string, number, number][] = [
    ["c_attn", C, 3 * C],
    ["c_fc", C, 4 * C],
    ["mlp.c_proj", 4 * C, C],
    ["attn.c_proj", C, C],
  ];
  const cases: MatmulCase[] = [];
  for (const [shape, K, N] of weights) {
    cases.push({ shape, role: "forward", layout: "AB", M, N, K, bias: true, accumulate: false });
    if (allLayouts || shape === "c_fc") {
      // y[M,N] = x[M,K]·W[K,N]:  dx[M,K] += dy[M,N]·Wᵀ (W read as stored [K,N] = [N',K'])
      cases.push({ shape, role: "backward dx", layout: "ABt", M, N: K, K: N, bias: false, accumulate: true });
      // dW[K,N] += xᵀ·dy (x stored [M,K] = [K',M'])
      cases.push({ shape, role: "backward dW", layout: "AtB", M: K, N, K: M, bias: false, accumulate: true });
    }
  }
  // tied head: logits[M,V] = x[M,C]·wteᵀ, wte stored [V,C]
  cases.push({
    shape: "lm_head",
    role: "forward",
    layout: "ABt",
    M,
    N: BASE_VOCAB,
    K: C,
    bias: false,
    accumulate: false,
  });
  return cases;
}

/** Options of {@link timeRepeated}. */
interface TimingOptions {
  /** Each timed group runs at least this long (calls are batched up to 64 per group). */
  groupMs: number;
  /** At most this many groups… */
  groups: number;
  /** …and no more than this much time in total (at least one group always runs). */
  budgetMs: number;
}

/**
 * Time `run` on `be`: one warm-up call, one sizing call, then groups of back-to-back calls each closed by
 * `sync()`. Returns the median group's milliseconds per call and the number of timed calls.
 */
async function timeRepeated(
  be: Backend,
  { run, timing: o }: { run: () => void; timing: TimingOptions },
): Promise<{ ms: number; reps: number }> {
  run();
  await be.sync();
  let t = now();
  run();
  await be.sync();
  const first = Math.max(now() - t, 1e-3);
  const inner = Math.min(64, Math.max(1, Math.ceil(o.groupMs / first)));
  const groups = Math.max(1, Math.min(o.groups, Math.floor(o.budgetMs / (first * inner))));
  const perCall: number[] = [];
  for (let g = 0; g < groups; g++) {
    t = now();
    for (let i = 0; i < inner; i++) run();
    await be.sync();
    perCall.push((now() - t) / inner);
  }
  return { ms: median(perCall), reps: groups * inner };
}

async function benchMatmul(
  be: Backend,
  { cases, timing, log }: { cases: readonly MatmulCase[]; timing: TimingOptions; log: (s: string) => void },
): Promise<MatmulResult[]> {
  const rng = normalRng(7);
  const out: MatmulResult[] = [];
  log(
    `matmul (median per call; ${timing.groups} groups of ≥ ${timing.groupMs} ms at most, ≤ ${timing.budgetMs} ms each):`,
  );
  for (const c of cases) {
    const a = be.upload(randomArray(c.M * c.K, rng), `bench a ${c.shape}`);
    const b = be.upload(randomArray(c.K * c.N, rng), `bench b ${c.shape}`);
    const bias = c.bias ? be.upload(randomArray(c.N, rng), `bench bias ${c.shape}`) : undefined;
    const o = be.alloc(c.M * c.N, "f32", `bench out ${c.shape}`);
    const args = {
      out: o,
      a,
      b,
      bias,
      M: c.M,
      N: c.N,
      K: c.K,
      transA: c.layout === "AtB",
      transB: c.layout === "ABt",
      accumulate: c.accumulate,
    };
    const { ms, reps } = await timeRepeated(be, { run: () => be.matmul(args), timing });
    for (const buf of [a, b, bias, o]) if (buf) be.free(buf);
    const gflops = (2 * c.M * c.N * c.K) / (ms * 1e6);
    const dims = c.layout === "AB"
      ? `${c.M}x${c.K} · ${c.K}x${c.N}`
      : c.layout === "AtB"
      ? `(${c.K}x${c.M})ᵀ · ${c.K}x${c.N}`
      : `${c.M}x${c.K} · (${c.N}x${c.K})ᵀ`;
    out.push({ shape: c.shape, role: c.role, layout: c.layout, dims, M: c.M, N: c.N, K: c.K, ms, gflops, reps });
    log(
      `  ${(c.shape + " " + c.role).padEnd(24)} ${c.layout.padEnd(4)} ${dims.padEnd(28)} ${
        ms.toFixed(3).padStart(10)
      } ms ` +
        `${gflops.toFixed(1).padStart(9)} GFLOP/s  (${reps} calls)`,
    );
  }
  return out;
}

/**
 * The shapes of `--size`: the notebook's model (uer/gpt2-chinese-cluecorpussmall with the SFT tokens) and the
 * original GPT-2s (vocabulary 50257 + the byte-level SFT additions, a pad token and the two ChatML tokens).
 */
export const BENCH_SIZES = {
  uer: { layers: 12, embd: 768, heads: 12, vocab: BASE_VOCAB + SFT_TOKENS },
  distilgpt2: { layers: 6, embd: 768, heads: 12, vocab: 50257 + 3 },
  gpt2: { layers: 12, embd: 768, heads: 12, vocab: 50257 + 3 },
  "gpt2-medium": { layers: 24, embd: 1024, heads: 16, vocab: 50257 + 3 },
  "gpt2-large": { layers: 36, embd: 1280, heads: 20, vocab: 50257 + 3 },
  "gpt2-xl": { layers: 48, embd: 1600, heads: 25, vocab: 50257 + 3 },
} as const;
/** A `--size` name. */
export type BenchSize = keyof typeof BENCH_SIZES;

/**
 * The real model's config (or fewer layers, or another `size`) with dropout `pdrop` at all three sites (HF's
 * default 0.1).
 */
export function benchConfig(layers: number, pdrop: number, size: BenchSize = "uer"): GPT2Config {
  const shape = BENCH_SIZES[size];
  return parseConfig({
    model_type: "gpt2",
    vocab_size: shape.vocab,
    n_positions: 1024,
    n_embd: shape.embd,
    n_layer: layers,
    n_head: shape.heads,
    activation_function: "gelu_new",
    embd_pdrop: pdrop,
    resid_pdrop: pdrop,
    attn_pdrop: pdrop,
  }, { file: "bench config" });
}

/**
 * Model FLOPs of one training step (matmuls and attention; forward + 2× for backward). Per layer the four
 * linears are 2·N·12·C² forward; attention's q·kᵀ and p·v are 4·B·T²·C forward (the full square, as the
 * kernels compute it); the head runs on the R supervised rows only: 2·R·C·V forward.
 */
function stepFlops(cfg: GPT2Config, { B, T, R }: { B: number; T: number; R: number }): number {
  const C = cfg.nEmbd, N = B * T;
  const perLayer = 2 * N * 12 * C * C + 4 * B * T * T * C;
  return 3 * (cfg.nLayer * perLayer + 2 * R * C * cfg.vocabSize);
}

/** Random token ids below the base vocabulary; labels = the ids on the last `SUPERVISED_TAIL` positions. */
function randomBatch(B: number, T: number, seed: number): Batch {
  const inputIds = new Int32Array(B * T), labels = new Int32Array(B * T).fill(-100);
  let s = seed >>> 0;
  for (let i = 0; i < B * T; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    inputIds[i] = s % BASE_VOCAB;
  }
  const tail = Math.min(SUPERVISED_TAIL, T - 1);
  for (let b = 0; b < B; b++) {
    for (let t = T - tail; t < T; t++) labels[b * T + t] = inputIds[b * T + t]!;
  }
  return { B, T, inputIds, attentionMask: new Int32Array(B * T).fill(1), labels };
}

/** Peak resident set of this process in bytes: Linux's VmHWM when readable, else the sampled maximum. */
class RssMeter {
  #max = 0;
  sample(): void {
    try {
      this.#max = Math.max(this.#max, process.memoryUsage().rss);
    } catch {
      // not available on this runtime
    }
  }
  get peak(): number {
    this.sample();
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
      if (m) return Math.max(this.#max, Number(m[1]) * 1024);
    } catch {
      // not Linux
    }
    return this.#max;
  }
}

/** GPU buffer bytes held by a WebGPU backend (`WebGpuBackend.stats`), or undefined for another backend. */
function gpuStats(
  be: Backend,
): { allocatedBytes: number; buffers: number; dispatches: number; submits: number } | undefined {
  return be instanceof WebGpuBackend ? be.stats : undefined;
}

interface StepOptions {
  cfg: GPT2Config;
  B: number;
  T: number;
  steps: number;
  warmup: number;
  /** Dropout rate (embeddings, attention probabilities, residual branches); 0 = none. */
  dropout: number;
  /** Matmul rate measured above (GFLOP/s), for the printed estimate. */
  rate?: number;
  /** Gradient checkpointing (`--gradient-checkpointing`). */
  checkpointing?: boolean;
  /** LoRA (`--lora`): the adapter of this spec trains, the base is frozen. */
  lora?: LoraSpec;
  rss: RssMeter;
  log: (s: string) => void;
}

/** The host's cost of one dispatch (WebGPU). */
interface DispatchResult {
  /** Dispatches recorded in a row (fewer than a batch, so none is submitted while recording). */
  n: number;
  /** Median µs to record one (bind group, uniforms, pass commands), the host's side alone. */
  record_us: number;
  /** Median µs per dispatch from the first record to the GPU's completion. */
  total_us: number;
}

/**
 * The host's cost per dispatch: 200 adds of 1024 floats on the same buffers recorded in a row, then
 * `sync()`; 5 rounds after a warm-up, medians. A training step of the real shape records ≈ 1000
 * dispatches, so this times 1000 is the host's share of a step (overlapped with the GPU when the GPU is slower).
 */
async function benchDispatch(be: WebGpuBackend): Promise<DispatchResult> {
  const n = 200, len = 1024;
  const a = be.alloc(len), b = be.alloc(len), out = be.alloc(len);
  const record: number[] = [], total: number[] = [];
  for (let round = 0; round < 6; round++) {
    const t0 = now();
    for (let i = 0; i < n; i++) be.add({ out, a, b, n: len });
    const t1 = now();
    await be.sync();
    if (round > 0) {
      record.push(((t1 - t0) * 1000) / n);
      total.push(((now() - t0) * 1000) / n);
    }
  }
  for (const x of [a, b, out]) be.free(x);
  return { n, record_us: median(record), total_us: median(total) };
}

async function benchStep(be: Backend, o: StepOptions): Promise<StepResult> {
  const { cfg, B, T, log } = o;
  const batch = randomBatch(B, T, 11);
  const R = B * Math.min(SUPERVISED_TAIL, T - 1);
  const flops = stepFlops(cfg, { B, T, R });
  let t = now();
  const model = GPT2.random(be, cfg, 1);
  if (o.lora) await model.attachLora(o.lora, undefined, 1);
  const opt = new AdamW(be, model.trainable, { lr: LR, weightDecay: WEIGHT_DECAY, maxGradNorm: MAX_GRAD_NORM }, model);
  await be.sync();
  log(
    `step: GPT-2 ${cfg.nLayer} layers, C ${cfg.nEmbd}, V ${cfg.vocabSize}, ${(model.numParams / 1e6).toFixed(1)} M ` +
      `parameters (random init ${((now() - t) / 1000).toFixed(1)} s); B ${B}, T ${T}, ${R} supervised tokens, ` +
      `dropout ${o.dropout}${o.checkpointing ? ", gradient checkpointing" : ""}` +
      (o.lora
        ? `; LoRA r ${o.lora.r} on ${o.lora.targets.join(",")}, ${o.lora.tokenIds.length} token rows, ` +
          `${(adapterSize(cfg, o.lora) / 1e6).toFixed(2)} M trainable`
        : ""),
  );
  const est = o.rate
    ? ` ≈ ${(flops / (o.rate * 1e9)).toFixed(1)} s of matmul at the c_fc rate above (a lower bound)`
    : "";
  log(`  ${(flops / 1e9).toFixed(1)} GFLOP per step${est}; ${o.warmup} warm-up + ${o.steps} timed step(s)`);
  const times: number[] = [], hostTimes: number[] = [], losses: number[] = [];
  const profiler = opProfiler(be);
  // step i: training mode (dropout at the config's rates, a new mask each step) unless the rates are 0
  const trainStep = (i: number) => {
    model.zeroGrad();
    const { loss } = model.loss(batch, {
      backward: true,
      dropoutSeed: o.dropout > 0 ? i + 1 : undefined,
      checkpointing: o.checkpointing,
    });
    opt.step(LR);
    return loss;
  };
  let counts0: { dispatches: number; submits: number } | undefined;
  for (let i = 0; i < o.warmup + o.steps; i++) {
    if (i === o.warmup) {
      if (profiler) await profiler.profile({ reset: true });
      counts0 = gpuStats(be);
    }
    t = now();
    const loss = trainStep(i);
    hostTimes.push(now() - t);
    await be.sync();
    const ms = now() - t;
    o.rss.sample();
    const value = (await be.read(loss))[0]!;
    be.free(loss);
    times.push(ms);
    losses.push(value);
    log(`  ${i < o.warmup ? "warm-up" : "step"} ${i + 1}: ${ms.toFixed(1)} ms, loss ${value.toFixed(4)}`);
  }
  const timed = times.slice(o.warmup);
  const ms = median(timed);
  const params = model.numParams;
  const counts1 = gpuStats(be);
  const perStep = (n: number) => Math.round(n / o.steps);
  // the loss reads above are not dispatches, but each read submits: count the step's own submits
  const counts = counts0 && counts1
    ? {
      dispatches: perStep(counts1.dispatches - counts0.dispatches),
      submits: perStep(counts1.submits - counts0.submits) - 1,
    }
    : {};
  const profile = profiler
    ? (await profiler.profile()).map((r) => ({ ...r, calls: r.calls / o.steps, ms: r.ms / o.steps }))
    : undefined;
  if (profiler && profile) {
    const note = be.name === "cpu" ? "" : "; profiled: one pass per dispatch";
    log(formatProfile(profile, { title: `${profiler.what}, per step (mean of ${o.steps}${note})` }));
  }
  // WebGPU: the same number of steps again, back to back with one sync at the end, as the trainer runs them
  // (it reads the loss every 20 steps): the host records a step while the GPU still runs the previous one.
  // On the CPU every call finishes its work before it returns, so this would repeat the figure above.
  let backToBack: number | undefined;
  if (be.name !== "cpu" && !profiler && o.steps >= 2) {
    const t0 = now();
    for (let i = 0; i < o.steps; i++) be.free(trainStep(o.warmup + o.steps + i));
    await be.sync();
    backToBack = (now() - t0) / o.steps;
    log(
      `  back to back (${o.steps} steps, one sync at the end, as the trainer runs them): ` +
        `${backToBack.toFixed(1)} ms/step`,
    );
  }
  model.dispose();
  opt.dispose();
  return {
    B,
    T,
    layers: cfg.nLayer,
    params,
    dropout: o.dropout,
    ms,
    ms_each: timed,
    warmup_ms: times.slice(0, o.warmup),
    tokens_per_s: (B * T) / (ms / 1000),
    supervised: R,
    gflop: flops / 1e9,
    gflops: flops / (ms * 1e6),
    loss_first: losses[0]!,
    loss_last: losses[losses.length - 1]!,
    host_ms: median(hostTimes.slice(o.warmup)),
    ...(backToBack !== undefined ? { back_to_back_ms: backToBack } : {}),
    ...counts,
    profile,
  };
}

async function main(): Promise<number> {
  const { values: v } = parseFlags({
    options: {
      backend: { type: "string" },
      json: { type: "boolean", default: false },
      quick: { type: "boolean", default: false },
      steps: { type: "string" },
      warmup: { type: "string" },
      seq: { type: "string" },
      batch: { type: "string" },
      layers: { type: "string" },
      size: { type: "string" },
      only: { type: "string" },
      "all-layouts": { type: "boolean", default: false },
      "no-dropout": { type: "boolean", default: false },
      "gradient-checkpointing": { type: "boolean", default: false },
      lora: { type: "boolean", default: false },
      "lora-r": { type: "string" },
      "classify-n": { type: "string" },
      "matmul-kernels": { type: "string" },
      "classify-shape": { type: "string" },
      "flush-every": { type: "string" },
      "no-flush-ramp": { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.log(
      "usage: bench.ts [--backend auto|cpu|webgpu] [--json] [--quick] [--steps N] [--warmup N] [--seq T] " +
        "[--batch B] [--layers L] [--size uer|distilgpt2|gpt2|gpt2-medium|gpt2-large|gpt2-xl] [--gradient-checkpointing] [--lora] [--lora-r R] " +
        "[--only PART[,PART…]] [--all-layouts] [--no-dropout] " +
        "[--classify-n N] [--classify-shape tiny|gpt2] [--matmul-kernels tiled,large,auto,tune,large-f16,naive] " +
        "[--flush-every N] [--no-flush-ramp] [--profile]",
    );
    return 0;
  }
  const quick = v.quick;
  const backendName: BackendName = parseBackendName(v.backend);
  const B = numberFlag("batch", v.batch, quick ? 1 : 4, { integer: true, min: 1 });
  const T = numberFlag("seq", v.seq, quick ? 128 : 256, { integer: true, min: 2, max: 1024 });
  const size = choiceFlag("size", v.size, Object.keys(BENCH_SIZES) as BenchSize[], "uer");
  // --lora: training's default adapter; the token rows of a real run's SFT additions (the notebook's 63 on the
  // uer model, <|pad|> <|im_start|> <|im_end|> on openai-community's) at the end of the vocabulary
  const vocab = BENCH_SIZES[size].vocab, added = size === "uer" ? SFT_TOKENS : 3;
  const lora = v.lora
    ? loraSpecOf(
      { ...DEFAULT_LORA, r: numberFlag("lora-r", v["lora-r"], DEFAULT_LORA.r, { integer: true, min: 1 }) },
      vocab - added,
      vocab,
    )
    : undefined;
  const layers = numberFlag("layers", v.layers, quick ? 2 : BENCH_SIZES[size].layers, { integer: true, min: 1 });
  const steps = numberFlag("steps", v.steps, 1, { integer: true, min: 1 });
  const warmup = numberFlag("warmup", v.warmup, 1, { integer: true, min: 0 });
  // --only: one part, or several separated by commas (e.g. "matmul,step"); "all" by default
  const PARTS = ["matmul", "step", "dispatch", "classify", "generate", "tta", "all"] as const;
  const parts = new Set((v.only ?? "all").split(",").map((p) => choiceFlag("only", p.trim(), PARTS, "all")));
  const run = (part: (typeof PARTS)[number]) => parts.has("all") || parts.has(part);
  const classifyN = numberFlag("classify-n", v["classify-n"], quick ? 20 : 100, { integer: true, min: 1 });
  const classifyShape = choiceFlag("classify-shape", v["classify-shape"], ["tiny", "gpt2"] as const, "tiny");
  // the environment's backend options, with the submit batching of the flags (bench only)
  const env = backendSettings();
  const webgpu: BackendOptions["webgpu"] = { ...env.webgpu };
  if (v["flush-every"] !== undefined) webgpu.flushEvery = parseFlushEvery(v["flush-every"], "--flush-every");
  if (v["no-flush-ramp"]) webgpu.flushRamp = false;
  const backendOpts: BackendOptions = { ...env, webgpu };
  const log = (s: string) => console.log(s);
  const rss = new RssMeter();
  rss.sample();

  // matmul on its own backend, so that its buffers do not count in the step's GPU memory
  const matmul: MatmulResult[] = [];
  const matmulTuning: TunedShape[] = [];
  let device = "", name = "";
  if (run("matmul")) {
    // WebGPU: one backend per kernel asked for (default: the backend's own, GPT2_SFT_MATMUL or "tiled")
    const kernels: (MatmulKernel | undefined)[] = v["matmul-kernels"]
      ? v["matmul-kernels"].split(",").map((k) =>
        parseMatmulKernel(k.trim(), "--matmul-kernels entry", ALL_MATMUL_KERNELS)
      )
      : [undefined];
    for (const kernel of kernels) {
      if (kernel && backendName === "cpu") throw new Error("--matmul-kernels needs --backend webgpu or auto");
      const be = kernel
        ? await WebGpuBackend.create({ ...webgpu, profile: env.profile, matmul: kernel })
        : await createBackend(backendName, backendOpts);
      device = be.description;
      name = be.name;
      log(`bench: ${be.name} (${be.description}), ${runtimeName()}`);
      const timing: TimingOptions = quick
        ? { groupMs: 20, groups: 2, budgetMs: 1000 }
        : { groupMs: 50, groups: 5, budgetMs: 10_000 };
      const res = await benchMatmul(be, {
        cases: matmulCases({ M: B * T, C: 768, allLayouts: v["all-layouts"] }),
        timing,
        log,
      });
      const k = be instanceof WebGpuBackend ? be.matmulKernel : undefined;
      matmul.push(...res.map((r) => (k ? { ...r, kernel: k } : r)));
      const tuning = be instanceof WebGpuBackend ? be.matmulTuning : undefined;
      if (tuning) {
        log(formatTuning(tuning));
        matmulTuning.push(...tuning);
      }
      be.dispose();
    }
  }

  /** A fresh backend for one part; the first one announces itself, the last one names the JSON's device. */
  const open = async (opts: { profile?: boolean } = {}) => {
    const be = await createBackend(backendName, { ...backendOpts, profile: opts.profile || env.profile });
    if (!device) log(`bench: ${be.name} (${be.description}), ${runtimeName()}`);
    device = be.description;
    name = be.name;
    return be;
  };

  let step: StepResult | undefined;
  let gpu: { allocatedBytes: number; buffers: number } | undefined;
  if (run("step")) {
    const be = await open({ profile: v.profile });
    const dropout = v["no-dropout"] ? 0 : 0.1;
    const cfg = benchConfig(layers, dropout, size);
    const kernel = be instanceof WebGpuBackend ? be.matmulKernel : undefined;
    const rate = matmul.find((m) => m.shape === "c_fc" && m.role === "forward" && m.kernel === kernel)?.gflops;
    const checkpointing = v["gradient-checkpointing"];
    step = await benchStep(be, { cfg, B, T, steps, warmup, dropout, rate, checkpointing, lora, rss, log });
    gpu = gpuStats(be);
    const tuning = be instanceof WebGpuBackend ? be.matmulTuning : undefined;
    if (tuning) {
      log(formatTuning(tuning));
      step.matmul_tuning = tuning;
    }
    be.dispose();
    log(
      `  median ${step.ms.toFixed(1)} ms/step, ${step.tokens_per_s.toFixed(0)} tokens/s, ` +
        `${step.gflops.toFixed(1)} GFLOP/s of model FLOPs; host ${step.host_ms.toFixed(1)} ms/step recording` +
        (step.dispatches !== undefined ? ` ${step.dispatches} dispatches in ${step.submits} submits` : ""),
    );
  }

  let dispatch: DispatchResult | undefined;
  if (run("dispatch") && backendName !== "cpu") {
    const be = await createBackend(backendName, backendOpts);
    if (be instanceof WebGpuBackend) {
      dispatch = await benchDispatch(be);
      log(
        `dispatch: ${dispatch.record_us.toFixed(1)} µs of host time to record one (add of 1024 floats, ` +
          `${dispatch.n} in a row), ${dispatch.total_us.toFixed(1)} µs each including the GPU`,
      );
    }
    be.dispose();
  }

  let classify: ClassifierResult | undefined;
  if (run("classify")) {
    const be = await open();
    try {
      classify = await benchClassifier(be, { n: classifyN, shape: classifyShape, log });
    } finally {
      be.dispose();
    }
  }

  // evaluation's generation, one prompt at a time vs batched (bench/generate.ts), on the classifier's model
  let generation: GenerationResult | undefined;
  if (run("generate")) {
    const be = await open();
    try {
      const n = quick ? 4 : 16;
      generation = await benchGeneration(be, { n, newTokens: 32, batch: 16, shape: classifyShape, log });
    } finally {
      be.dispose();
    }
  }

  // time to 99 % (bench/time_to_accuracy.ts, the tiny demo model, both paddings); --quick: a few steps only
  let tta: unknown;
  if (run("tta")) {
    const lines: string[] = [];
    const ttaArgs = ["--backend", backendName, "--pad", "both", "--json"];
    if (quick) ttaArgs.push("--train", "200", "--eval-n", "20", "--eval-every", "10", "--max-steps", "20");
    const code = await timeToAccuracyMain(ttaArgs, (l) => {
      lines.push(l);
      if (!l.startsWith("{")) log(l);
    });
    if (code !== 0) throw new Error(`time to accuracy failed (exit ${code})`);
    const last = JSON.parse(lines.at(-1)!) as {
      backend: string;
      device: string;
      summary: unknown;
      ratio: unknown;
      settings: unknown;
      model: unknown;
    };
    tta = { summary: last.summary, ratio: last.ratio, settings: last.settings, model: last.model };
    if (!device) [name, device] = [last.backend, last.device];
  }

  const hostPeak = rss.peak;
  const peakBytes = gpu ? gpu.allocatedBytes : hostPeak;
  log(
    gpu
      ? `peak GPU buffers: ${(gpu.allocatedBytes / 2 ** 20).toFixed(0)} MiB in ${gpu.buffers} buffers; ` +
        `host peak RSS ${(hostPeak / 2 ** 20).toFixed(0)} MiB`
      : `peak host RSS: ${(hostPeak / 2 ** 20).toFixed(0)} MiB`,
  );
  // what training would have printed before starting, for the same shape (src/train/memory.ts)
  const estimate = run("step")
    ? estimateTrainingMemory(benchConfig(layers, 0, size), B, T, {
      gradientCheckpointing: v["gradient-checkpointing"],
      lora: lora && { trainable: adapterSize(benchConfig(layers, 0, size), lora), tokenRows: lora.tokenIds.length > 0 },
    })
    : undefined;
  if (estimate) log(`(training's estimate for this shape: ${(estimate.total / 2 ** 20).toFixed(0)} MiB)`);
  if (v.json) {
    console.log(JSON.stringify({
      backend: name,
      device,
      runtime: runtimeName(),
      date: new Date().toISOString(),
      quick,
      argv: process.argv.slice(2),
      matmul,
      matmul_tuning: matmulTuning.length > 0 ? matmulTuning : undefined,
      step,
      dispatch,
      classify,
      generate: generation,
      time_to_accuracy: tta,
      peak_bytes: peakBytes,
      peak_kind: gpu ? "gpu_buffers_allocated" : "host_rss_peak",
      host_rss_peak_bytes: hostPeak,
      size,
      lora: lora ?? null,
      estimate_bytes: estimate?.total,
      gpu_buffers: gpu?.buffers,
    }));
  }
  return 0;
}

if (import.meta.main) runMain("bench", main);
