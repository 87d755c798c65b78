/**
 * The dispatch runtime of the WebGPU backend: the device, its buffer pool, the pipeline and bind-group
 * caches, the uniform ring, and the command encoder that dispatches are recorded into.
 *
 * - **Pipelines** are cached per kernel entry point (an object key) and override values, specialised
 *   with WGSL `override` constants, never by editing shader text.
 * - **Uniform parameters** (sizes, scalars) of each dispatch go into its own 256-byte slot of a ring
 *   buffer, written with one `writeBuffer` just before the batch is submitted.
 * - **Dispatch** records compute passes into one command encoder; the batch is submitted when the host
 *   needs the results (`read`, `sync`), before a host write (`write`, `upload`), or every
 *   {@link MAX_BATCH} dispatches (fewer with the `flushEvery` option); after each wait for the GPU the
 *   batches start at 16 dispatches and double (the `flushRamp` option), so an idle GPU gets work at once.
 * - Workgroup counts above 65535 (maxComputeWorkgroupsPerDimension) become 2D grids; the kernels
 *   linearise `workgroup_id` and skip the excess.
 * - Every binding must fit the device's maxStorageBufferBindingSize (or the lowered splitting limit of the
 *   `maxBindingBytes` option): a buffer larger than that is bound in windows by the ops that split
 *   (`split.ts`); any other op meeting one fails with an error naming the kernel, the tensor and the limit.
 * - WebGPU forbids binding one buffer twice in a dispatch when one binding is writable: {@link GpuRuntime.dispatch}
 *   reports such aliasing as an error naming the kernel. Views of one group may be written side by side in
 *   one dispatch (the embedding's two gradients), never written beside a read of the same group.
 * @module
 */

import type { Buf, DType } from "../backend.ts";
import type { GpuProfiler } from "../gpu_profiler.ts";
import { BufferPool, byteSize, GpuBuf, sameRange, USAGE_COPY_DST, USAGE_UNIFORM } from "./buffers.ts";
import type { KernelDef, KernelFile } from "./kernels.ts";
import { checkOverrides, orderBindings, packParams } from "./layout.ts";
import { MAX_BATCH } from "./options.ts";

const STAGE_COMPUTE = 0x4;

/** Bytes per uniform slot (minUniformBufferOffsetAlignment is at most 256). */
const UNIFORM_SLOT = 256;
/** Bind groups kept before the cache starts over (a training step uses a few hundred). */
const MAX_BIND_GROUPS = 8192;
/** maxComputeWorkgroupsPerDimension's guaranteed value. */
const MAX_GROUPS_PER_DIM = 65535;
/** The first batch after a wait for the GPU, with the ramp on (`WebGpuBackendOptions.flushRamp`). */
const RAMP_START = 16;

/** Options of one dispatch. */
export interface DispatchArgs {
  /** Uniform values by `struct Params` field name: every field, no other name. */
  params: Readonly<Record<string, number>>;
  /**
   * Storage buffers by binding name: every binding of the kernel, no other name; null binds a placeholder
   * (for a binding the variant ignores).
   */
  bufs: Readonly<Record<string, GpuBuf | null>>;
  /** Workgroups: a count (made 2D when above 65535) or an explicit [x, y]. */
  groups: number | readonly [number, number] | readonly [number, number, number];
  /** Override constants. */
  constants?: Record<string, number>;
  /** Appended to the kernel's name in a profile (e.g. a matmul's shape). */
  profileNote?: string;
  /** Time this dispatch under `key` with this profiler (the matmul tuner's runs) instead of the backend's. */
  timer?: { by: GpuProfiler; key: string };
}

/** How a {@link GpuRuntime} submits and times its work. */
export interface RuntimeOptions {
  /** Time every dispatch with this profiler (null: no profiling). */
  profiler: GpuProfiler | null;
  /** A second profiler whose batches are finished at each submit (the matmul tuner's), or null. */
  tuneTimer: GpuProfiler | null;
  /** Dispatches per submitted batch at most (1 … {@link MAX_BATCH}). */
  flushEvery: number;
  /** Whether batches ramp up from 16 dispatches after each wait for the GPU. */
  flushRamp: boolean;
  /** Split tensors as if one binding held at most this many bytes (default: the device's limit). */
  maxBindingBytes?: number;
}

/** The device, the buffers and everything between an op and `dispatchWorkgroups`. */
export class GpuRuntime {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly profiler: GpuProfiler | null;
  readonly #tuneTimer: GpuProfiler | null;
  readonly flushEvery: number;
  readonly flushRamp: boolean;
  /** Dispatches the batch being recorded holds before it is submitted: ramps up to flushEvery. */
  #batchLimit: number;
  readonly #modules = new Map<KernelFile, GPUShaderModule>();
  readonly #layouts = new Map<KernelDef, { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout; id: number }>();
  /** Bind groups by layout and buffers (see {@link GpuRuntime.#bindGroup}). */
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  /** A small integer per GPU buffer, for bind-group keys. */
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextId = 0;
  readonly #pipelines = new Map<KernelDef, Map<string, GPUComputePipeline>>();
  readonly #uniforms: GPUBuffer;
  readonly #uniformHost = new ArrayBuffer(MAX_BATCH * UNIFORM_SLOT);
  #slots = 0;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #error: Error | null = null;
  #disposed = false;
  #dispatches = 0;
  #submits = 0;

  constructor(device: GPUDevice, opts: RuntimeOptions) {
    this.device = device;
    this.pool = new BufferPool(device, opts.maxBindingBytes);
    this.profiler = opts.profiler;
    this.#tuneTimer = opts.tuneTimer;
    this.flushEvery = opts.flushEvery;
    this.flushRamp = opts.flushRamp;
    this.#batchLimit = this.#rampStart();
    this.#uniforms = device.createBuffer({
      label: "uniform ring",
      size: MAX_BATCH * UNIFORM_SLOT,
      usage: USAGE_UNIFORM | USAGE_COPY_DST,
    });
    device.lost.then((info) => {
      if (info.reason !== "destroyed" && !this.#disposed) {
        this.#error ??= new Error(`WebGPU device lost: ${info.reason}: ${info.message}`);
      }
    });
    const onError = (ev: Event) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#error ??= new Error(`WebGPU error: ${e?.message ?? String(ev)}`);
    };
    if (typeof device.addEventListener === "function") device.addEventListener("uncapturederror", onError);
    else (device as { onuncapturederror?: unknown }).onuncapturederror = onError;
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Compute dispatches recorded and command buffers submitted so far. */
  get counts(): { dispatches: number; submits: number } {
    return { dispatches: this.#dispatches, submits: this.#submits };
  }

  // ------------------------------------------------------------------ checks and buffers

  /** The live GpuBuf behind a handle, checking that it is not freed and has the right dtype. */
  buf(buf: Buf, op: string, dtype: DType = "f32"): GpuBuf {
    const b = buf as GpuBuf;
    if (!(b instanceof GpuBuf)) throw new Error(`Cannot run ${op}: the buffer does not belong to this backend`);
    if (!b.buffer) throw new Error(`Cannot run ${op}: buffer "${b.label}" was freed`);
    if (this.#disposed) throw new Error(`Cannot run ${op}: the WebGPU backend was disposed`);
    if (this.#error) throw this.#error;
    if (op !== "write" && op !== "read" && op !== "zero" && op !== "copy" && b.dtype !== dtype) {
      throw new Error(`Cannot run ${op}: buffer "${b.label}" is ${b.dtype}, expected ${dtype}`);
    }
    return b;
  }

  /** The most bytes one binding holds (the splitting limit: `BufferPool.maxBindingBytes`). */
  get maxBindingBytes(): number {
    return this.pool.maxBindingBytes;
  }

  /** minStorageBufferOffsetAlignment in elements: where a window of a buffer may start. */
  get alignElements(): number {
    return this.device.limits.minStorageBufferOffsetAlignment / 4;
  }

  /** A buffer from the pool (contents undefined) or a new one (zeros). */
  acquire(length: number, dtype: DType, label: string): GpuBuf {
    if (this.#disposed) throw new Error(`Cannot allocate "${label}": the WebGPU backend was disposed`);
    return this.pool.acquire(length, dtype, label);
  }

  /** Return a buffer to the pool (a view or a freed buffer: nothing). */
  release(buf: Buf): void {
    this.pool.release(buf);
  }

  // ------------------------------------------------------------------ encoder and submits

  /** The command encoder, with no compute pass open (for clears and copies). */
  commands(): GPUCommandEncoder {
    this.#endPass();
    return this.#enc();
  }

  #enc(): GPUCommandEncoder {
    return this.#encoder ??= this.device.createCommandEncoder();
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  /** Submit everything recorded so far, with the uniform slots it uses. */
  flush(): void {
    this.#endPass();
    if (!this.#encoder) return;
    if (this.#slots > 0) {
      this.device.queue.writeBuffer(this.#uniforms, 0, this.#uniformHost, 0, this.#slots * UNIFORM_SLOT);
    }
    const afterProfile = this.profiler?.finishBatch(this.#encoder);
    const afterTune = this.#tuneTimer?.finishBatch(this.#encoder);
    this.device.queue.submit([this.#encoder.finish()]);
    this.#submits++;
    afterProfile?.();
    afterTune?.();
    this.#encoder = null;
    this.#slots = 0;
  }

  /** After a wait for the GPU: it is idle (or nearly), so the next batch starts small again. */
  waited(): void {
    this.#batchLimit = this.#rampStart();
  }

  /** The first batch's size after a wait for the GPU: 16 with the ramp on, else flushEvery. */
  #rampStart(): number {
    return this.flushRamp ? Math.min(RAMP_START, this.flushEvery) : this.flushEvery;
  }

  /** Throw the first error the device reported (validation, device lost), if any. */
  throwIfFailed(): void {
    if (this.#error) throw this.#error;
  }

  /** Submit, wait until the GPU has done everything, and report any error. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.waited(); // the GPU is idle now
    this.throwIfFailed();
  }

  /** Destroy every buffer, the profilers and the device. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.pool.destroy();
    this.#bindGroups.clear();
    this.#uniforms.destroy();
    this.profiler?.destroy();
    this.#tuneTimer?.destroy();
    this.device.destroy();
  }

  // ------------------------------------------------------------------ pipelines and bind groups

  #pipeline(
    k: KernelDef,
    constants: Record<string, number>,
  ): { pipeline: GPUComputePipeline; bgl: GPUBindGroupLayout; layoutId: number } {
    let layout = this.#layouts.get(k);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [
        { binding: 0, visibility: STAGE_COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true } },
        ...k.src.layout.bindings.map((b, i): GPUBindGroupLayoutEntry => ({
          binding: i + 1,
          visibility: STAGE_COMPUTE,
          buffer: { type: b.writable ? "storage" : "read-only-storage" },
        })),
      ];
      const bgl = this.device.createBindGroupLayout({ label: `${k.src.file}:${k.entry}`, entries });
      layout = { bgl, pl: this.device.createPipelineLayout({ bindGroupLayouts: [bgl] }), id: this.#nextId++ };
      this.#layouts.set(k, layout);
    }
    let byConstants = this.#pipelines.get(k);
    if (!byConstants) this.#pipelines.set(k, byConstants = new Map());
    const key = Object.keys(constants).sort().map((c) => `${c}=${constants[c]}`).join(",");
    let pipeline = byConstants.get(key);
    if (!pipeline) {
      checkOverrides(k.src.layout, `${k.src.file}:${k.entry}`, constants);
      let module = this.#modules.get(k.src);
      if (!module) {
        module = this.device.createShaderModule({ label: k.src.file, code: k.src.code });
        this.#modules.set(k.src, module);
      }
      pipeline = this.device.createComputePipeline({
        label: `${k.src.file}:${k.entry}${key ? ` (${key})` : ""}`,
        layout: layout.pl,
        compute: { module, entryPoint: k.entry, constants },
      });
      byConstants.set(key, pipeline);
    }
    return { pipeline, bgl: layout.bgl, layoutId: layout.id };
  }

  /**
   * The bind group of the uniform ring (binding 0, its slot chosen per dispatch by a dynamic offset) and
   * `bufs` (bindings 1 … n in order; null binds a placeholder), made once per layout and set of buffers.
   * Creating bind groups was most of the host's time per dispatch; pooled buffers recur from step to step,
   * so the cache hits. A buffer is bound whole, a group's view as its own range. Binding whole buffers is
   * safe because every kernel indexes by its size uniforms, never by `arrayLength`; a pooled buffer larger
   * than the device's binding limit (its size class past it) is bound by the range its length uses.
   */
  #bindGroup(
    bgl: GPUBindGroupLayout,
    layoutId: number,
    bufs: readonly (GpuBuf | null)[],
  ): GPUBindGroup {
    let key = String(layoutId);
    const resources: GPUBufferBinding[] = [];
    for (let i = 0; i < bufs.length; i++) {
      const b = bufs[i];
      const buffer = b?.buffer ?? this.pool.placeholder(i);
      let id = this.#bufferIds.get(buffer);
      if (id === undefined) this.#bufferIds.set(buffer, id = this.#nextId++);
      if (b?.owner || buffer.size > this.pool.deviceBindingBytes) {
        const size = byteSize(b!.length);
        resources.push({ buffer, offset: b!.offset, size });
        key += `,${id}@${b!.offset}+${size}`;
      } else {
        resources.push({ buffer });
        key += "," + id;
      }
    }
    let group = this.#bindGroups.get(key);
    if (!group) {
      if (this.#bindGroups.size >= MAX_BIND_GROUPS) this.#bindGroups.clear();
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: this.#uniforms, offset: 0, size: UNIFORM_SLOT } },
      ];
      for (let i = 0; i < resources.length; i++) entries.push({ binding: i + 1, resource: resources[i]! });
      group = this.device.createBindGroup({ layout: bgl, entries });
      this.#bindGroups.set(key, group);
    }
    return group;
  }

  // ------------------------------------------------------------------ dispatch

  /** Record one dispatch of kernel `k`. */
  dispatch(k: KernelDef, args: DispatchArgs): void {
    const label = `${k.src.file}:${k.entry}`;
    // Workgroup grid.
    let gx: number, gy: number, gz = 1;
    if (typeof args.groups === "number") {
      const n = args.groups;
      if (n === 0) return;
      gy = Math.ceil(n / MAX_GROUPS_PER_DIM);
      gx = Math.ceil(n / gy);
    } else {
      [gx, gy, gz = 1] = args.groups;
      if (gx === 0 || gy === 0 || gz === 0) return;
    }
    if (gx > MAX_GROUPS_PER_DIM || gy > MAX_GROUPS_PER_DIM || gz > MAX_GROUPS_PER_DIM) {
      throw new Error(
        `Cannot dispatch ${label}: ${gx} × ${gy} × ${gz} workgroups exceed ${MAX_GROUPS_PER_DIM} per dimension`,
      );
    }
    // A writable binding may share its GPU buffer only with other writable bindings of disjoint ranges
    // (views of one group): WebGPU rejects a buffer both written and read in one dispatch, and overlap.
    const layout = k.src.layout;
    const bufs = orderBindings(layout, label, args.bufs);
    const limit = this.pool.maxBindingBytes;
    for (let i = 0; i < bufs.length; i++) {
      const b = bufs[i];
      if (b && byteSize(b.length) > limit) {
        throw new Error(
          `Cannot dispatch ${label}: ${layout.bindings[i]!.name} ("${b.label}") is ${byteSize(b.length)} bytes, more ` +
            `than one binding holds on this device (${limit} bytes${
              limit < this.pool.deviceBindingBytes ? ", the backend's maxBindingBytes" : ", maxStorageBufferBindingSize"
            }); this op does not split its tensors into several bindings`,
        );
      }
    }
    for (let i = 0; i < bufs.length; i++) {
      const bi = bufs[i];
      if (!bi || !layout.bindings[i]!.writable) continue;
      for (let j = 0; j < bufs.length; j++) {
        const bj = bufs[j];
        if (j === i || !bj || bj.buffer !== bi.buffer) continue;
        if (!layout.bindings[j]!.writable || (bj.offset < bi.end && bi.offset < bj.end)) {
          throw new Error(
            bi === bj || sameRange(bi, bj)
              ? `Cannot dispatch ${label}: buffer "${bi.label}" is bound twice and written`
              : `Cannot dispatch ${label}: "${bi.label}" is written while "${bj.label}", in the same GPU buffer, is ` +
                `bound too (${layout.bindings[j]!.writable ? "overlapping" : "read"})`,
          );
        }
      }
    }
    const { pipeline, bgl, layoutId } = this.#pipeline(k, args.constants ?? {});
    // Uniform parameters into this dispatch's slot (checked before the slot is taken).
    if (this.#slots >= this.#batchLimit) {
      this.flush();
      this.#batchLimit = Math.min(2 * this.#batchLimit, this.flushEvery);
    }
    const view = new DataView(this.#uniformHost, this.#slots * UNIFORM_SLOT, UNIFORM_SLOT);
    packParams(layout, label, args.params, view);
    const slot = this.#slots++;
    const bindGroup = this.#bindGroup(bgl, layoutId, bufs);
    const timer = args.timer ??
      (this.profiler ? { by: this.profiler, key: args.profileNote ? `${label} ${args.profileNote}` : label } : null);
    if (timer) {
      // a pass of its own, with its own pair of timestamps
      this.#endPass();
      this.#pass = this.#enc().beginComputePass(timer.by.pass(timer.key));
    }
    this.#pass ??= this.#enc().beginComputePass();
    this.#pass.setPipeline(pipeline);
    this.#pass.setBindGroup(0, bindGroup, [slot * UNIFORM_SLOT]);
    this.#pass.dispatchWorkgroups(gx, gy, gz);
    this.#dispatches++;
    if (args.timer) this.#endPass(); // later dispatches must not fall inside the timed pass
  }
}
