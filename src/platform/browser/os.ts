/**
 * `node:os` in the browser bundle: a home of "/" (the in-memory file system's root), one host, the cores
 * the browser reports, and the memory it reports (`navigator.deviceMemory`, which browsers round and cap at
 * 8 GB; 8 GB where it is absent): what training's memory estimate is checked against on the CPU backend.
 * @module
 */

/** The home directory. */
export function homedir(): string {
  return "/home";
}

/** A scratch directory. */
export function tmpdir(): string {
  return "/tmp";
}

/** This host. */
export function hostname(): string {
  return "browser";
}

/** One entry per core the browser reports. */
export function cpus(): { model: string; speed: number }[] {
  const n = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)?.hardwareConcurrency ?? 1;
  return Array.from({ length: n }, () => ({ model: "browser", speed: 0 }));
}

/** The machine's memory as the browser reports it. */
export function totalmem(): number {
  const gb = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory ?? 8;
  return gb * 2 ** 30;
}

/** See {@link totalmem}. */
export function freemem(): number {
  return totalmem();
}

/** The platform. */
export function platform(): string {
  return "browser";
}

export const EOL = "\n";

const os = { homedir, tmpdir, hostname, cpus, totalmem, freemem, platform, EOL };
export default os;
