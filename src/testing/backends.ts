/**
 * Test helpers shared by the tests that run an op on two backends: finding a WebGPU adapter (a failure
 * under CI, a one-line notice elsewhere) and running the same op on the CPU and the GPU.
 * @module
 */

import type { Backend, Buf } from "../backend/backend.ts";
import { webgpuAvailable } from "../backend/gpu_device.ts";
import { outputSettings } from "../env.ts";

/**
 * Whether the WebGPU tests of `suite` can run. Without an adapter: under CI (`CI` set) this throws, since CI
 * installs lavapipe and must not silently skip; elsewhere it prints a one-line notice and returns false.
 */
export async function webgpuForTests(suite: string): Promise<boolean> {
  if (await webgpuAvailable()) return true;
  if (outputSettings().ci) {
    throw new Error(`${suite}: no WebGPU adapter found, and CI is set (a GPU or lavapipe is required)`);
  }
  console.log(`${suite}: no WebGPU adapter found; skipping its WebGPU tests`);
  return false;
}

/** Host data of a buffer. */
export type Data = Float32Array | Int32Array;

/**
 * Upload `inputs` to both backends, run `op` on each, and read back `outputs`. Buffers named in `inputs` are
 * uploaded; `op` may alias them freely.
 */
export async function onBoth(
  cpu: Backend,
  gpu: Backend,
  inputs: Record<string, Data>,
  op: (be: Backend, b: Record<string, Buf>) => void,
  outputs: readonly string[],
): Promise<{ cpu: Record<string, Data>; gpu: Record<string, Data> }> {
  const run = async (be: Backend) => {
    const bufs: Record<string, Buf> = {};
    for (const [k, v] of Object.entries(inputs)) bufs[k] = be.upload(v.slice(), k);
    op(be, bufs);
    const res: Record<string, Data> = {};
    for (const k of outputs) res[k] = await be.read(bufs[k]!);
    for (const b of Object.values(bufs)) be.free(b);
    return res;
  };
  return { cpu: await run(cpu), gpu: await run(gpu) };
}
