// The SFT dataset end to end against the fixture: ChatML text → tokenizer (truncated to 160, keeping
// [CLS] … [SEP]) → labels under each mask mode → padded batch. The fixture's input_ids, attention_mask,
// labels and labels_eos were written by make_fixture.py with Hugging Face's tokenizer and the notebook's
// masking rule; integer tensors, compared exactly.
import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { buildSftDataset, collate, droppedSummary, processExample } from "../src/data/sft_dataset.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { parseChatml } from "./helpers/parse_chatml.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/", import.meta.url).pathname;
const ref = JSON.parse(await readFile(FIXTURE + "reference.json", "utf8")) as { texts: string[] };
const tensors = readSafetensors(await readFile(FIXTURE + "reference.safetensors"), "reference.safetensors");
const I = (name: string) => tensors.get(name)!.data as Int32Array;
const [B, T] = tensors.get("input_ids")!.shape as [number, number];
const tok = await BertTokenizer.fromDir(FIXTURE + "model");
// as the notebook's tokenizer in memory, which padded the fixture's rows: pad <|pad|> (loaded alone, model/'s
// stale special_tokens_map.json makes the pad [PAD], as in Python); the additions themselves are all there
if (tok.prepareForSft() !== 0) throw new Error("the fixture's model/ lacks the SFT tokens");
const conversations = ref.texts.map((t) => parseChatml(t));

describe("SFT dataset against the fixture", () => {
  test("max_length padding reproduces input_ids, attention_mask and labels (mask: assistant)", () => {
    const ds = buildSftDataset(conversations, tok, { maxLength: T, mask: "assistant" });
    expect(ds.examples.length).toBe(B);
    const batch = collate(ds.examples, { padId: tok.padTokenId, pad: "max_length", maxLength: T });
    expect(batch.T).toBe(T);
    expect(batch.inputIds).toEqual(I("input_ids"));
    expect(batch.attentionMask).toEqual(I("attention_mask"));
    expect(batch.labels).toEqual(I("labels"));
  });

  test("mask assistant+eos reproduces labels_eos", () => {
    const ds = buildSftDataset(conversations, tok, { maxLength: T, mask: "assistant+eos" });
    const batch = collate(ds.examples, { padId: tok.padTokenId, pad: "max_length", maxLength: T });
    expect(batch.labels).toEqual(I("labels_eos"));
  });

  test("the third example is cut by truncation and keeps [CLS] … [SEP]", () => {
    const ex = processExample(conversations[2]!, tok, { maxLength: T, mask: "assistant" })!;
    expect(ex.inputIds.length).toBe(T);
    expect(ex.inputIds[0]).toBe(tok.clsTokenId);
    expect(ex.inputIds[T - 1]).toBe(tok.sepTokenId);
  });

  test("longest padding: rows as long as the longest example, the same labels", () => {
    const ds = buildSftDataset(conversations.slice(0, 2), tok, { maxLength: T, mask: "assistant" });
    const batch = collate(ds.examples, { padId: tok.padTokenId });
    const longest = Math.max(...ds.examples.map((e) => e.inputIds.length));
    expect(batch.T).toBe(longest);
    for (let b = 0; b < 2; b++) {
      expect([...batch.labels.subarray(b * longest, (b + 1) * longest)]).toEqual(
        [...I("labels").subarray(b * T, b * T + longest)],
      );
    }
    expect(batch.supervised).toBe(ds.examples[0]!.supervised + ds.examples[1]!.supervised);
  });

  test("mask none: every real token is a target", () => {
    const ex = processExample(conversations[0]!, tok, { maxLength: T, mask: "none" })!;
    expect(ex.labels).toEqual(ex.inputIds);
  });

  test("examples whose answer was cut away are dropped and counted; none left is an error", () => {
    // at 40 tokens the first two answers (after ~60-token prompts) are gone; the third's too
    const ds = buildSftDataset(
      [...conversations, [{ role: "user", content: "你好" }, { role: "assistant", content: "好" }]],
      tok,
      { maxLength: 40, mask: "assistant" },
    );
    expect(ds.total).toBe(4);
    expect(ds.dropped).toBe(3);
    expect(ds.droppedLines).toEqual([1, 2, 3]);
    expect(ds.emptyAnswers).toBe(0);
    expect(() => buildSftDataset(conversations, tok, { maxLength: 40, mask: "assistant", source: "x.jsonl" }))
      .toThrow("none of the 3 conversations has a supervised token after truncation to 40");
  });

  test("dropped examples are named by line, with the cause: truncation or an empty answer", () => {
    const empty = [{ role: "user" as const, content: "你好" }, { role: "assistant" as const, content: "" }];
    const ok = [{ role: "user" as const, content: "你好" }, { role: "assistant" as const, content: "好的好的" }];
    const ds = buildSftDataset([conversations[0]!, empty, ok], tok, {
      maxLength: 40,
      mask: "assistant",
      lines: [3, 5, 8],
    });
    expect(ds.droppedLines).toEqual([3, 5]);
    expect(ds.emptyAnswers).toBe(1);
    expect(droppedSummary(ds, "d/train.jsonl", 40)).toBe(
      "Dropped 2 of 3 examples of d/train.jsonl with no supervised token: 1 cut away by truncation to 40 tokens " +
        "(raise --max-length to keep them), 1 with an empty answer; lines 3, 5",
    );
    expect(droppedSummary(buildSftDataset([ok], tok, { maxLength: 40, mask: "assistant" }), "f", 40)).toBeUndefined();
    // nothing left because every answer is empty: said so, not blamed on truncation
    expect(() => buildSftDataset([empty, empty], tok, { maxLength: 256, mask: "assistant", lines: [1, 2] })).toThrow(
      "none of the 2 conversations has an answer to learn (every assistant answer is empty or a single token, " +
        'mask mode "assistant"; lines 1, 2)',
    );
  });
});
