/**
 * Getting a WebGPU device on any runtime. Deno has `navigator.gpu` built in (wgpu); Bun and Node get it
 * from the npm package `webgpu` (Dawn), which is imported only when `navigator.gpu` is missing.
 *
 * The device is requested with the adapter's largest storage-binding, buffer and workgroup limits: the
 * real model's token embedding is 21128 × 768 floats = 65 MB and its attention probabilities
 * [B,NH,T,T] grow with T², so the defaults (128 MiB per binding, 256 MiB per buffer) are raised to what
 * the adapter allows (a tensor larger than a binding is then bound in windows: `webgpu/split.ts`). The
 * storage-offset alignment is lowered to the adapter's (256 bytes by default; lavapipe offers 32 or 16), so
 * that such windows can start at finer steps. `shader-f16` and `timestamp-query` are enabled when the
 * adapter has them.
 * @module
 */

/** Options for {@link requestGpuDevice}. */
export interface GpuDeviceOptions {
  /** Passed to `requestAdapter`. */
  powerPreference?: "low-power" | "high-performance";
  /** Return null for a software (fallback) adapter such as Mesa's lavapipe / llvmpipe. */
  rejectSoftware?: boolean;
}

/** A device with the adapter it came from and a one-line description. */
export interface GpuDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** For example "webgpu: llvmpipe (LLVM 15.0.6, 256 bits) (fallback)". */
  description: string;
  /** True for a software adapter (lavapipe / llvmpipe / SwiftShader). */
  software: boolean;
}

/** The limits we raise to the adapter's maximum (or, for an alignment, lower to its minimum). */
const RAISED_LIMITS = [
  "minStorageBufferOffsetAlignment",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Features we use when present. */
const WANTED_FEATURES = ["shader-f16", "timestamp-query"] as const;

/**
 * Dawn's options (the npm `webgpu` package, under Bun and Node): timestamp queries are full precision, as
 * under Deno's wgpu; Dawn rounds them down to 2¹⁶ ns by default (a browser's defence against timing
 * attacks), which would make the profiler (`GPT2_SFT_PROFILE`) and the matmul tuner blind below 65 µs.
 */
const DAWN_FLAGS = ["disable-dawn-features=timestamp_quantization"];

let dawnLoaded: Promise<void> | undefined;
let usingDawn = false;

/**
 * What Dawn's Vulkan backend prints to stderr on every adapter request on Mesa's lavapipe, whose limits
 * (1,000,000 dynamic buffers) Dawn clamps: noise to a user, as the clamped limits are far above ours.
 */
const DAWN_NOISE =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

/**
 * Run `fn` with the process's stderr (file descriptor 2) sent to a temporary file, then write what it
 * received back to stderr without {@link DAWN_NOISE}'s lines: native code writes to the descriptor, past
 * any JS stream. Only under Bun on Linux and macOS (`bun:ffi` gives dup/dup2); elsewhere `fn` runs as is.
 */
export async function withDawnNoiseFiltered<T>(fn: () => Promise<T>): Promise<T> {
  const bun = (globalThis as { Bun?: unknown }).Bun !== undefined;
  if (!usingDawn || !bun || (process.platform !== "linux" && process.platform !== "darwin")) return await fn();
  let libc: { symbols: { dup(fd: number): number; dup2(from: number, to: number): number } };
  let file: string, fd: number;
  const fs = await import("node:fs");
  try {
    const ffi = await import("bun:ffi" as string) as {
      dlopen(lib: string, symbols: Record<string, { args: string[]; returns: string }>): typeof libc;
    };
    libc = ffi.dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
      dup: { args: ["i32"], returns: "i32" },
      dup2: { args: ["i32", "i32"], returns: "i32" },
    });
    const { tmpdir } = await import("node:os");
    file = `${tmpdir()}/gpt2-sft-dawn-${process.pid}-${Date.now()}.log`;
    fd = fs.openSync(file, "w+", 0o600);
  } catch {
    return await fn();
  }
  const saved = libc.symbols.dup(2);
  if (saved < 0 || libc.symbols.dup2(fd, 2) < 0) {
    if (saved >= 0) fs.closeSync(saved);
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    return await fn();
  }
  try {
    return await fn();
  } finally {
    libc.symbols.dup2(saved, 2);
    fs.closeSync(saved);
    const text = fs.readFileSync(file, "utf8");
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    const kept = text.split("\n").filter((line, i, all) =>
      !DAWN_NOISE.test(line) && (line !== "" || i < all.length - 1)
    );
    if (kept.length > 0) process.stderr.write(kept.join("\n") + "\n");
  }
}

/** Make `navigator.gpu` exist: built in on Deno, from the npm `webgpu` package (Dawn) elsewhere. */
async function ensureNavigatorGpu(): Promise<GPU | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  dawnLoaded ??= (async () => {
    try {
      const mod = await import("webgpu") as unknown as {
        create: (flags: string[]) => GPU;
        globals: Record<string, unknown>;
      };
      Object.assign(globalThis, mod.globals);
      const g = globalThis as { navigator?: { gpu?: GPU } };
      if (!g.navigator) Object.defineProperty(globalThis, "navigator", { value: {}, configurable: true });
      Object.defineProperty(g.navigator!, "gpu", { value: mod.create(DAWN_FLAGS), configurable: true });
      usingDawn = true;
    } catch {
      // No WebGPU available on this runtime: callers see undefined.
    }
  })();
  await dawnLoaded;
  return (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
}

function adapterDescription(adapter: GPUAdapter): { text: string; software: boolean } {
  const info = (adapter as { info?: GPUAdapterInfo }).info;
  const parts = [info?.description, info?.vendor, info?.architecture, info?.device].filter((s) => !!s);
  const name = parts.length > 0 ? String(parts[0]) : "unknown adapter";
  const fallback = (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true ||
    (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  const software = fallback || /llvmpipe|lavapipe|swiftshader|software/i.test(name);
  return { text: `webgpu: ${name}${software ? " (software)" : ""}`, software };
}

/**
 * Request a WebGPU device with raised limits, or null when there is no adapter (or only a software one
 * and `rejectSoftware` is set). A lost device (driver reset, out of memory) is reported on stderr with
 * its reason; the WebGPU backend also turns it into an error on its next call.
 */
export async function requestGpuDevice(opts: GpuDeviceOptions = {}): Promise<GpuDevice | null> {
  const gpu = await ensureNavigatorGpu();
  if (!gpu) return null;
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await withDawnNoiseFiltered(() =>
      gpu.requestAdapter(opts.powerPreference ? { powerPreference: opts.powerPreference } : undefined)
    );
  } catch {
    adapter = null;
  }
  if (!adapter) return null;
  const { text, software } = adapterDescription(adapter);
  if (software && opts.rejectSoftware) return null;

  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  device.lost.then((info) => {
    if (info.reason !== "destroyed") {
      console.error(`WebGPU device lost: ${info.reason}: ${info.message}`);
    }
  });
  return { device, adapter, description: text, software };
}

/** Whether any WebGPU adapter (hardware or software) can be found on this runtime. */
export async function webgpuAvailable(): Promise<boolean> {
  const gpu = await ensureNavigatorGpu();
  if (!gpu) return false;
  try {
    return (await withDawnNoiseFiltered(() => gpu.requestAdapter())) !== null;
  } catch {
    return false;
  }
}
