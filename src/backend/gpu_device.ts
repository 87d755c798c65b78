/**
 * Getting a WebGPU device on any runtime. Deno has `navigator.gpu` built in (wgpu); Bun and Node get it
 * from the npm package `webgpu` (Dawn), which is imported only when `navigator.gpu` is missing.
 *
 * The device is requested with the adapter's largest storage-binding, buffer and workgroup limits: the
 * real model's token embedding is 21128 × 768 floats = 65 MB and its attention probabilities
 * [B,NH,T,T] grow with T², so the defaults (128 MiB per binding, 256 MiB per buffer) are raised to what
 * the adapter allows. `shader-f16` and `timestamp-query` are enabled when the adapter has them.
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

/** The limits we raise to the adapter's maximum. */
const RAISED_LIMITS = [
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
    adapter = await gpu.requestAdapter(opts.powerPreference ? { powerPreference: opts.powerPreference } : undefined);
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
    return (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}
