/**
 * The CPU backend: see cpu/reference.ts.
 * @module
 */

export { CpuBackend, type CpuBackendOptions, CpuBuf, cpuData } from "./cpu/reference.ts";
