/**
 * GPT-2 supervised fine-tuning in TypeScript, with the maths in hand-written WGSL kernels on WebGPU (and a
 * plain-TypeScript CPU backend that is the reference). The public API: backends, the model and its
 * tokenizer, the SFT data and dataset, training, generation and the notebook's label classifier.
 *
 * @example Score the notebook's six labels for one request with a model directory (offline, on the CPU)
 * ```ts
 * import { classify, createBackend, GPT2, ISSUE_LABELS, loadModelDir, promptFor, BertTokenizer } from "./mod.ts";
 *
 * const dir = "tests/fixtures/tiny-gpt2-zh/model"; // or a hub id through loadModelAndTokenizer
 * const be = await createBackend("cpu");
 * const { config, tensors } = await loadModelDir(dir);
 * const model = GPT2.fromTensors(be, config, tensors);
 * const tok = await BertTokenizer.fromDir(dir);
 * const prompt = tok.encode(promptFor("请判断用户诉求类别……文本：订单延迟发货。"), { addSpecialTokens: false }).ids;
 * const labels = ISSUE_LABELS.map((label) => ({ label, ids: tok.encode(label, { addSpecialTokens: false }).ids }));
 * const { label, scores } = await classify(model, prompt, labels);
 * console.log(label, scores);
 * be.dispose();
 * ```
 *
 * @example Fine-tune: see `src/train/run.ts` (`runTraining`) or run `deno task train` / `deno task demo`.
 * @module
 */

export type { Backend, Buf } from "./src/backend/backend.ts";
export {
  BACKEND_NAMES,
  type BackendName,
  type BackendOptions,
  createBackend,
  parseBackendName,
  profileReport,
} from "./src/backend/mod.ts";
// the environment variables the commands honour, as options (`createBackend(name, backendSettings())`)
export { backendSettings, hubEnvironment, readSettings, type Settings } from "./src/env.ts";
export { formatProfile, type KernelTime, mergeMatmulRows } from "./src/backend/profile.ts";
export { CpuBackend } from "./src/backend/cpu.ts";
export { Tape, Tensor } from "./src/autograd/tensor.ts";
export { type GPT2Config, parseConfig } from "./src/model/config.ts";
export { type Batch, GPT2, KvCache } from "./src/model/gpt2.ts";
export { type BatchPrompt, generate, generateBatch, type GenerateOptions } from "./src/model/generate.ts";
export { loadModelAndTokenizer } from "./src/model/load.ts";
export { BertTokenizer } from "./src/tokenizer/tokenizer.ts";
export { ByteLevelBpeTokenizer } from "./src/tokenizer/byte_level.ts";
export { loadTokenizer, tokenizerFromFiles } from "./src/tokenizer/load.ts";
export type { Encoding, Tokenizer } from "./src/tokenizer/types.ts";
export { loadModelDir, saveModelDir } from "./src/io/model_dir.ts";
export { DEFAULT_MODEL, resolveModel } from "./src/io/hub.ts";
export { formatChatml, type Message, promptFor } from "./src/data/chatml.ts";
export {
  generateClassificationRecords,
  generateExtractionRecords,
  ISSUE_LABELS,
  toMessages,
} from "./src/data/synth.ts";
export { buildSftDataset, collate, type MaskMode } from "./src/data/sft_dataset.ts";
export { type PackedRow, packExamples } from "./src/data/packing.ts";
export { AdamW } from "./src/train/adamw.ts";
export { NOTEBOOK_TRAIN_CONFIG, type TrainConfig, trainLoop } from "./src/train/trainer.ts";
export { runTraining } from "./src/train/run.ts";
export { classify, classifyBatch, scoreLabels } from "./src/eval/classify.ts";
export { scorePrediction } from "./src/eval/metrics.ts";
export {
  type ConfusionMatrix,
  confusionMatrix,
  renderConfusionConsole,
  renderConfusionSvg,
} from "./src/eval/confusion.ts";
export { runEvaluation } from "./src/eval/run.ts";
