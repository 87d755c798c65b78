/**
 * Run under Bun by tests/gpu_device_test.ts: request a WebGPU device through Dawn (the npm `webgpu`
 * package), then write Dawn's lavapipe noise and one other line to file descriptor 2 inside the filter,
 * as native code would. Prints the adapter's description on stdout.
 */
import { writeSync } from "node:fs";
import { requestGpuDevice, withDawnNoiseFiltered } from "../../src/backend/gpu_device.ts";

const gpu = await requestGpuDevice();
console.log(gpu === null ? "no device" : gpu.description);
await withDawnNoiseFiltered(() => {
  writeSync(
    2,
    "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic " +
      "offset allocation limit.\nnative: a line that must come through\n",
  );
  return Promise.resolve();
});
gpu?.device.destroy();
