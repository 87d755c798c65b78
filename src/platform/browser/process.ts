/**
 * `node:process` in the browser bundle: an empty environment, no arguments, a working directory "/",
 * and stdout/stderr that hand their text to a sink the page sets ({@link setOutputSink}; the console by
 * default). The page raises signals itself with {@link emit} (its Stop button sends "SIGINT", which the
 * training loop answers as it answers Ctrl-C: it finishes the step and saves a checkpoint); `exit` throws, as
 * a page cannot end its process.
 * @module
 */

/** Where stdout and stderr text goes. */
export type OutputSink = (stream: "stdout" | "stderr", text: string) => void;

let sink: OutputSink = (stream, text) => (stream === "stderr" ? console.warn : console.log)(text.replace(/\n$/, ""));

/** Send stdout/stderr text to `fn` (the page's log). */
export function setOutputSink(fn: OutputSink): void {
  sink = fn;
}

function stream(name: "stdout" | "stderr") {
  return {
    isTTY: false,
    columns: 100,
    write(text: string | Uint8Array): boolean {
      sink(name, typeof text === "string" ? text : new TextDecoder().decode(text));
      return true;
    },
    on() {},
    off() {},
    once() {},
  };
}

export const env: Record<string, string | undefined> = {};
export const argv: string[] = ["browser", "page"];
export const pid = 1;
export const platform = "browser";
export const arch = "wasm";
export const execPath = "";
export const versions: Record<string, string> = {};
export const stdout: ReturnType<typeof stream> = stream("stdout");
export const stderr: ReturnType<typeof stream> = stream("stderr");

/** The working directory of the in-memory file system. */
export function cwd(): string {
  return "/";
}

/** A page cannot end its process: the caller's error says what wanted to. */
export function exit(code = 0): never {
  throw new Error(`process.exit(${code}) called in the browser`);
}

type Listener = (...args: unknown[]) => void;
const listeners = new Map<string, Listener[]>();

/** Call `fn` on each `event` (a signal the page raises with {@link emit}). */
export function on(event: string, fn: Listener): void {
  listeners.set(event, [...(listeners.get(event) ?? []), fn]);
}
/** Stop calling `fn` on `event`. */
export function off(event: string, fn: Listener): void {
  const now = (listeners.get(event) ?? []).filter((f) => f !== fn);
  if (now.length > 0) listeners.set(event, now);
  else listeners.delete(event);
}
/** Call `fn` on the next `event` only. */
export function once(event: string, fn: Listener): void {
  const wrapped: Listener = (...args) => {
    off(event, wrapped);
    fn(...args);
  };
  on(event, wrapped);
}
/** Raise `event` (e.g. "SIGINT"); returns whether anything listened. */
export function emit(event: string, ...args: unknown[]): boolean {
  const fns = listeners.get(event) ?? [];
  for (const fn of fns) fn(...args);
  return fns.length > 0;
}

/** Only this page's own id is alive (the run lock asks). */
export function kill(target: number): boolean {
  if (target !== pid) throw Object.assign(new Error("ESRCH"), { code: "ESRCH" });
  return true;
}

/** Milliseconds as Node's `hrtime.bigint` counts nanoseconds. */
export const hrtime = { bigint: (): bigint => BigInt(Math.round(performance.now() * 1e6)) };

/** Memory use: the page cannot see its own, so zeros. */
export function memoryUsage(): { rss: number; heapUsed: number; heapTotal: number; external: number } {
  return { rss: 0, heapUsed: 0, heapTotal: 0, external: 0 };
}

const process = {
  env,
  argv,
  pid,
  platform,
  arch,
  execPath,
  versions,
  stdout,
  stderr,
  cwd,
  exit,
  on,
  off,
  once,
  emit,
  kill,
  hrtime,
  memoryUsage,
  exitCode: undefined as number | undefined,
};
export default process;
