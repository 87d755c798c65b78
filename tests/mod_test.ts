// The public API's doc example runs as written.
import { expect, test } from "bun:test";
import { BertTokenizer, classify, createBackend, GPT2, ISSUE_LABELS, loadModelDir, promptFor } from "../mod.ts";

test("mod.ts example: the label classifier on a model directory", async () => {
  const dir = new URL("./fixtures/tiny-gpt2-zh/model", import.meta.url).pathname;
  const be = await createBackend("cpu");
  const { config, tensors } = await loadModelDir(dir);
  const model = GPT2.fromTensors(be, config, tensors);
  const tok = await BertTokenizer.fromDir(dir);
  const prompt = tok.encode(promptFor("请判断用户诉求类别……文本：订单延迟发货。"), { addSpecialTokens: false }).ids;
  const labels = ISSUE_LABELS.map((label) => ({ label, ids: tok.encode(label, { addSpecialTokens: false }).ids }));
  const { label, scores } = await classify(model, prompt, labels);
  expect(ISSUE_LABELS).toContain(label);
  expect(scores).toHaveLength(6);
  expect(scores.every((s) => Number.isFinite(s) && s < 0)).toBe(true);
  be.dispose();
});
