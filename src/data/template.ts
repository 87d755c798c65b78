/**
 * Chat templates: a conversation rendered by a Hugging Face Jinja `chat_template` (with `@huggingface/jinja`,
 * as transformers' `apply_chat_template` renders it), and the character spans that carry loss, in the shape
 * of {@link chatmlWithSpans} so that the dataset takes either.
 *
 * The spans of the assistant turns come from the template's `{% generation %}…{% endgeneration %}` blocks
 * where it has them (transformers' `return_assistant_tokens_mask`), else from rendering successive prefixes
 * of the conversation: assistant turn i is what rendering `messages[:i+1]` adds after rendering
 * `messages[:i]` with `add_generation_prompt` (so the header that the generation prompt holds is not in it).
 *
 * {@link CHATML_TEMPLATE} is the notebook's ChatML as a Jinja template: the `chat_template` saved with a
 * model trained on ChatML, so that Python's `tokenizer.apply_chat_template(messages, tokenize=False)`
 * gives the text it was trained on.
 *
 * @example
 * ```ts
 * const tpl = compileChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}");
 * const { text, spans } = templateWithSpans(
 *   tpl,
 *   [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }],
 *   "assistant",
 * );
 * // text = "<user>hi\n<assistant>hello\n", spans = [[20, 25]]
 * ```
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse, Template, tokenize } from "@huggingface/jinja";
import {
  chatmlWithSpans,
  formatChatml,
  IM_START,
  type Message,
  type Span,
  type SpanMode,
  type TrainOn,
} from "./chatml.ts";

/** A conversation as text and the spans that carry loss: {@link chatmlWithSpans}, or a template's. */
export type ConversationRenderer = (
  messages: readonly Message[],
  mode: SpanMode,
  trainOn?: TrainOn,
) => { text: string; spans: Span[] };

/**
 * The notebook's ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n` per message) as a Jinja chat
 * template, the assistant's content and its `<|im_end|>` in a generation block (the default mask,
 * "assistant+eos"), and `<|im_start|>assistant\n` as the generation prompt.
 */
export const CHATML_TEMPLATE = "{% for message in messages %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' }}" +
  "{% if message['role'] == 'assistant' %}" +
  "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}" +
  "{% else %}{{ message['content'] + '<|im_end|>' + '\\n' }}{% endif %}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The `--chat-template` choices besides a file: the notebook's ChatML, or the model's own template. */
export const CHAT_TEMPLATE_CHOICES = ["chatml", "model"] as const;

/** A compiled chat template. */
export interface ChatTemplate {
  /** The Jinja source. */
  readonly source: string;
  /** Where it came from (a file, "the model's tokenizer_config.json"), for messages. */
  readonly name: string;
  /** Whether the source has `{% generation %}` blocks. */
  readonly hasGeneration: boolean;
  /** Render `messages` as `apply_chat_template(messages, tokenize=False, add_generation_prompt=…)`. */
  render(messages: readonly Message[], opts?: { addGenerationPrompt?: boolean }): string;
}

// Marks the generation blocks in a rendering: private-use characters, refused in the messages.
const GEN_OPEN = "\uE000";
const GEN_CLOSE = "\uE001";
/** Each compiled template's rendering with its generation blocks marked (for {@link templateWithSpans}). */
const markedRenderers = new WeakMap<ChatTemplate, (messages: readonly Message[]) => string>();
const GENERATION_TAG = /{%(-?)\s*(end)?generation\s*(-?)%}/g;

/**
 * The source with each `{% generation %}` / `{% endgeneration %}` replaced by an expression that prints a
 * marker. The block whitespace rules that transformers renders with (lstrip_blocks, trim_blocks) are applied
 * first, as `Template` applies them (so the tags still count as block tags there); `-` in a tag strips the
 * whitespace on its side, as it does in an expression.
 */
function markGenerationBlocks(source: string): string {
  return source.replace(/^[ \t]*({[#%-])/gm, "$1").replace(/([#%-]})\n/g, "$1").replace(
    GENERATION_TAG,
    (_all, left: string, end: string | undefined, right: string) =>
      `{{${left} '${end ? GEN_CLOSE : GEN_OPEN}' ${right}}}`,
  );
}

/** A template error's message (jinja throws plain Errors, or strings from `raise_exception`). */
function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Compile a chat template. `specialTokens` are the tokenizer's (`bos_token`, `eos_token`, …), passed to
 * the template as transformers does; `name` says where the template came from, in errors.
 */
export function compileChatTemplate(
  source: string,
  opts: { name?: string; specialTokens?: Record<string, string> } = {},
): ChatTemplate {
  const name = opts.name ?? "the chat template";
  const compile = (src: string) => {
    try {
      return new Template(src);
    } catch (e) {
      throw new Error(`Cannot parse ${name}: ${messageOf(e)}`);
    }
  };
  const hasGeneration = GENERATION_TAG.test(source);
  GENERATION_TAG.lastIndex = 0;
  const plain = compile(source);
  let marked = plain;
  if (hasGeneration) {
    // the block rules are already applied: parse without them (as `new Template` would apply them again)
    marked = compile("");
    try {
      marked.parsed = parse(tokenize(markGenerationBlocks(source), {}));
    } catch (e) {
      throw new Error(`Cannot parse ${name}: ${messageOf(e)}`);
    }
  }
  const run = (t: Template, messages: readonly Message[], addGenerationPrompt: boolean) => {
    try {
      return t.render({
        ...opts.specialTokens,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (e) {
      throw new Error(`${name} refused the conversation: ${messageOf(e)}`);
    }
  };
  const tpl: ChatTemplate = {
    source,
    name,
    hasGeneration,
    render: (messages, o = {}) => run(plain, messages, !!o.addGenerationPrompt),
  };
  markedRenderers.set(tpl, (messages) => run(marked, messages, false));
  return tpl;
}

/** Which assistant turns carry loss: weight ≠ 0, and with `trainOn` "last" only the last of those. */
function trainedTurns(messages: readonly Message[], trainOn: TrainOn): boolean[] {
  let last = -1;
  for (const [i, m] of messages.entries()) if (m.role === "assistant" && m.weight !== 0) last = i;
  return messages.map((m, i) => m.role === "assistant" && m.weight !== 0 && (trainOn === "all" || i === last));
}

/**
 * The span of one assistant turn whose text (after its header) is `turn`, at `offset` in the full text:
 * with "assistant+eos" the turn without its trailing whitespace (the content and the closing token), with
 * "assistant" the content where the turn holds it (as it is, or trimmed; else the whole turn).
 */
function turnSpan(turn: string, offset: number, content: string, mode: SpanMode, exact: boolean): Span {
  const whole: Span = [offset, offset + (exact ? turn.length : turn.trimEnd().length)];
  if (mode === "assistant+eos") return whole;
  for (const c of [content, content.trim()]) {
    const at = turn.indexOf(c);
    if (at >= 0) return [offset + at, offset + at + c.length];
  }
  return whole;
}

/**
 * The text of `messages` rendered by `tpl` and the character spans that carry loss, as
 * {@link chatmlWithSpans} computes them for ChatML (mode, weights and `trainOn` alike). A generation block
 * is a span as it stands ("assistant+eos"), or the content inside it ("assistant").
 */
export function templateWithSpans(
  tpl: ChatTemplate,
  messages: readonly Message[],
  mode: SpanMode,
  trainOn: TrainOn = "all",
): { text: string; spans: Span[] } {
  if (mode !== "assistant" && mode !== "assistant+eos" && mode !== "none") {
    throw new Error(`Cannot compute loss spans: unknown mode "${mode}" (expected assistant, assistant+eos or none)`);
  }
  const trained = trainedTurns(messages, trainOn);
  if (mode === "none") {
    const text = tpl.render(messages);
    return { text, spans: [[0, text.length]] };
  }
  return tpl.hasGeneration
    ? spansFromBlocks(tpl, messages, mode, trained)
    : spansFromPrefixes(tpl, messages, mode, trained);
}

function spansFromBlocks(
  tpl: ChatTemplate,
  messages: readonly Message[],
  mode: SpanMode,
  trained: boolean[],
): { text: string; spans: Span[] } {
  for (const m of messages) {
    if (m.content.includes(GEN_OPEN) || m.content.includes(GEN_CLOSE)) {
      throw new Error(`Cannot render with ${tpl.name}: a message holds the private-use character U+E000 or U+E001`);
    }
  }
  const render = markedRenderers.get(tpl);
  if (!render) throw new Error(`Cannot render with ${tpl.name}: it was not made by compileChatTemplate`);
  const marked = render(messages);
  let text = "";
  const blocks: Span[] = [];
  let open = -1;
  for (const ch of marked) {
    if (ch === GEN_OPEN || ch === GEN_CLOSE) {
      if ((ch === GEN_OPEN) !== (open < 0)) {
        throw new Error(`Cannot render with ${tpl.name}: its {% generation %} blocks are nested or unclosed`);
      }
      if (ch === GEN_OPEN) open = text.length;
      else blocks.push([open, text.length]), open = -1;
    } else text += ch;
  }
  if (open >= 0) throw new Error(`Cannot render with ${tpl.name}: a {% generation %} block is not closed`);
  const assistants = messages.flatMap((m, i) => (m.role === "assistant" ? [i] : []));
  if (blocks.length !== assistants.length) {
    throw new Error(
      `Cannot render with ${tpl.name}: it has ${blocks.length} {% generation %} blocks for ${assistants.length} ` +
        "assistant messages (expected one around each assistant reply)",
    );
  }
  const spans: Span[] = [];
  for (const [k, i] of assistants.entries()) {
    if (!trained[i]) continue;
    const [a, b] = blocks[k]!;
    spans.push(turnSpan(text.slice(a, b), a, messages[i]!.content, mode, true));
  }
  return { text, spans };
}

function spansFromPrefixes(
  tpl: ChatTemplate,
  messages: readonly Message[],
  mode: SpanMode,
  trained: boolean[],
): { text: string; spans: Span[] } {
  const text = tpl.render(messages);
  const spans: Span[] = [];
  for (const [i, m] of messages.entries()) {
    if (!trained[i]) continue;
    const before = tpl.render(messages.slice(0, i), { addGenerationPrompt: true });
    const upto = i + 1 === messages.length ? text : tpl.render(messages.slice(0, i + 1));
    if (!upto.startsWith(before) || !text.startsWith(upto)) {
      throw new Error(
        `Cannot find assistant message ${i + 1} in the rendering of ${tpl.name}: rendering the messages before it ` +
          "with the generation prompt, then with it, then the whole conversation, does not give texts that " +
          "begin with one another; mark the replies with {% generation %}…{% endgeneration %} in the template",
      );
    }
    spans.push(turnSpan(upto.slice(before.length), before.length, m.content, mode, false));
  }
  return { text, spans };
}

/** The renderer of `tpl` for the dataset; without a template, the notebook's ChatML ({@link chatmlWithSpans}). */
export function conversationRenderer(tpl: ChatTemplate | undefined): ConversationRenderer {
  return tpl ? (messages, mode, trainOn) => templateWithSpans(tpl, messages, mode, trainOn) : chatmlWithSpans;
}

/**
 * The prompt that asks for the next assistant reply: the conversation rendered with the generation prompt,
 * by `tpl`, or without one as ChatML ending `<|im_start|>assistant\n` (the notebook's `generate_response`).
 */
export function generationPrompt(tpl: ChatTemplate | undefined, messages: readonly Message[]): string {
  return tpl ? tpl.render(messages, { addGenerationPrompt: true }) : `${formatChatml(messages)}${IM_START}assistant\n`;
}

/** A model directory's chat template and special tokens, from tokenizer_config.json or chat_template.jinja. */
export interface ModelChatTemplate {
  /** The Jinja source; undefined when the model has none. */
  source?: string;
  /** The file it was read from. */
  file?: string;
  /** The special tokens of tokenizer_config.json (`bos_token`, `eos_token`, …), as the template sees them. */
  specialTokens: Record<string, string>;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return undefined;
    throw new Error(`Cannot read ${path}: ${messageOf(e)}`);
  }
}

/**
 * Read the chat template of a model directory: `chat_template.jinja` (as transformers saves it), else the
 * `chat_template` field of tokenizer_config.json (a string, or a list of `{name, template}` of which the one
 * named "default" is taken).
 */
export async function readModelChatTemplate(dir: string): Promise<ModelChatTemplate> {
  const cfgPath = join(dir, "tokenizer_config.json");
  const raw = await readText(cfgPath);
  let cfg: Record<string, unknown> = {};
  if (raw !== undefined) {
    try {
      cfg = JSON.parse(raw);
    } catch (e) {
      throw new Error(`Cannot read ${cfgPath}: ${messageOf(e)}`);
    }
  }
  const specialTokens: Record<string, string> = {};
  for (const [k, v] of Object.entries(cfg)) {
    if (!k.endsWith("_token")) continue;
    const content = typeof v === "string" ? v : (v as { content?: unknown } | null)?.content;
    if (typeof content === "string") specialTokens[k] = content;
  }
  const jinjaPath = join(dir, "chat_template.jinja");
  const jinja = await readText(jinjaPath);
  if (jinja !== undefined) return { source: jinja, file: jinjaPath, specialTokens };
  const t = cfg.chat_template;
  if (t === undefined || t === null) return { specialTokens };
  if (typeof t === "string") return { source: t, file: cfgPath, specialTokens };
  if (Array.isArray(t)) {
    const named = t.find((x) => (x as { name?: unknown })?.name === "default") as { template?: unknown } | undefined;
    if (typeof named?.template === "string") return { source: named.template, file: cfgPath, specialTokens };
  }
  throw new Error(
    `Cannot read ${cfgPath}: chat_template is ${JSON.stringify(t).slice(0, 80)} (expected a string, or a list ` +
      'of {"name", "template"} with one named "default")',
  );
}

/**
 * The template of `--chat-template`: "chatml" (undefined: the notebook's ChatML), "model" (the model
 * directory's own; an error when it has none) or a Jinja file. A template that is {@link CHATML_TEMPLATE}
 * is ChatML too. The model's special tokens are given to the template either way.
 */
export async function resolveChatTemplate(
  choice: string,
  modelDir: string,
  flag = "--chat-template",
): Promise<ChatTemplate | undefined> {
  if (choice === "chatml") return undefined;
  const model = await readModelChatTemplate(modelDir);
  let source: string, name: string;
  if (choice === "model") {
    if (model.source === undefined) {
      throw new Error(
        `Invalid ${flag} model: ${modelDir} has no chat template (no chat_template in its tokenizer_config.json, ` +
          "no chat_template.jinja); use chatml or a .jinja file",
      );
    }
    source = model.source;
    name = `the chat template of ${model.file}`;
  } else {
    const text = await readText(choice);
    if (text === undefined) {
      throw new Error(`Invalid ${flag} ${choice}: no such file (expected chatml, model or a Jinja file)`);
    }
    source = text;
    name = `the chat template ${choice}`;
  }
  if (source === CHATML_TEMPLATE) return undefined;
  return compileChatTemplate(source, { name, specialTokens: model.specialTokens });
}

/**
 * The chat template a model directory carries, compiled, for prompting it (`deno task chat`); undefined when
 * it has none or it is {@link CHATML_TEMPLATE} (the notebook's ChatML is then used as it always was).
 */
export async function modelChatTemplate(modelDir: string): Promise<ChatTemplate | undefined> {
  const m = await readModelChatTemplate(modelDir);
  if (m.source === undefined || m.source === CHATML_TEMPLATE) return undefined;
  return compileChatTemplate(m.source, { name: `the chat template of ${m.file}`, specialTokens: m.specialTokens });
}
