/**
 * `node:process` in the browser bundle: an empty environment, no arguments, a working directory "/",
 * and stdout/stderr that hand their text to a sink the page sets ({@link setOutputSink}; the console by
 * default). Signals never come; `exit` throws, as a page cannot end its process.
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

/** Signals never arrive in a page. */
export function on(): void {}
/** See {@link on}. */
export function off(): void {}
/** See {@link on}. */
export function once(): void {}

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
  kill,
  hrtime,
  memoryUsage,
  exitCode: undefined as number | undefined,
};
export default process;
