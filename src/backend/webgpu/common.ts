/**
 * `kernels/common.wgsl`, the WGSL helpers several kernels share (the workgroup reductions, the dropout
 * hash), and the link step that gives a kernel the ones it names. A kernel's header says which it uses,
 * `// Uses from common.wgsl (appended when the kernel is loaded): workgroup_max, workgroup_sum.`, and
 * {@link linkKernel} appends those functions and the helpers they call to its source. The line must be
 * true: naming a helper the kernel does not call, calling one it does not name, or defining one itself is
 * an error, so that every helper exists once and each file's header says where its calls lead.
 * @module
 */

import commonSrc from "../../../kernels/common.wgsl" with { type: "text" };
import { stripComments } from "./layout.ts";

/** One function of common.wgsl: its text (with the comment above it) and the other helpers it calls. */
export interface Helper {
  readonly name: string;
  readonly text: string;
  readonly calls: readonly string[];
}

/** The functions of a common.wgsl source, in file order. */
export function parseHelpers(code: string): Map<string, Helper> {
  const found: { name: string; text: string }[] = [];
  for (const m of code.matchAll(/((?:^\/\/[^\n]*\n)*)^fn (\w+)\([\s\S]*?^\}$/gm)) {
    found.push({ name: m[2]!, text: m[0] });
  }
  const names = new Set(found.map((f) => f.name));
  const helpers = new Map<string, Helper>();
  for (const f of found) {
    const body = stripComments(f.text).replace(/\bfn\s+\w+/, "fn");
    const calls = [...names].filter((n) => n !== f.name && callRe(n).test(body));
    helpers.set(f.name, { ...f, calls });
  }
  return helpers;
}

/** The helpers of kernels/common.wgsl. */
export const COMMON: ReadonlyMap<string, Helper> = parseHelpers(commonSrc);

function callRe(name: string): RegExp {
  return new RegExp(`\\b${name}\\s*\\(`);
}

/**
 * The source of kernel `file` with the common.wgsl helpers it names appended (the code unchanged when it
 * names none). Throws, naming the file and the helper, when the "Uses from common.wgsl" line and the code
 * disagree or name a helper common.wgsl lacks.
 */
export function linkKernel(file: string, code: string, helpers: ReadonlyMap<string, Helper> = COMMON): string {
  const fail = (what: string): never => {
    throw new Error(`Cannot load kernel ${file}: ${what}`);
  };
  const line = /^\/\/ Uses from common\.wgsl[^:\n]*:([^\n]*)$/m.exec(code);
  const listed = line ? line[1]!.split(/[\s,.]+/).filter((n) => n !== "") : [];
  for (const name of listed) {
    if (!helpers.has(name)) fail(`common.wgsl has no function "${name}" (it has ${[...helpers.keys()].join(", ")})`);
  }
  const src = stripComments(code);
  const calls = src.replace(/\bfn\s+\w+/g, "fn");
  for (const name of helpers.keys()) {
    const named = listed.includes(name);
    if (new RegExp(`\\bfn\\s+${name}\\b`).test(src)) {
      fail(`it defines ${name}, which common.wgsl provides (name it in its "Uses from common.wgsl" line instead)`);
    }
    const called = callRe(name).test(calls);
    if (called && !named) {
      fail(`it calls ${name} from common.wgsl without naming it in its "Uses from common.wgsl" line`);
    }
    if (named && !called) fail(`its "Uses from common.wgsl" line names ${name}, which it does not call`);
  }
  if (listed.length === 0) return code;
  // the named helpers and those they call, in common.wgsl's order
  const need = new Set<string>();
  const add = (name: string) => {
    if (need.has(name)) return;
    need.add(name);
    for (const c of helpers.get(name)!.calls) add(c);
  };
  listed.forEach(add);
  const texts = [...helpers.values()].filter((h) => need.has(h.name)).map((h) => h.text);
  return `${code.trimEnd()}\n\n// ---- appended from common.wgsl ----\n\n${texts.join("\n\n")}\n`;
}
