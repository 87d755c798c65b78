import { selectCpuMatmul } from "../../src/backend/cpu_fast.ts";
const fm = selectCpuMatmul("blas")!;
const M = 2100;
for (const [N, K] of [[256, 64], [192, 64], [64, 256], [64, 64]]) {
  const a = new Float32Array(M * K).map(() => Math.random()), b = new Float32Array(K * N).map(() => Math.random());
  const bias = new Float32Array(N).map(() => Math.random()), out = new Float32Array(M * N);
  let t0 = Infinity, t1 = Infinity;
  for (let r = 0; r < 100; r++) {
    let t = performance.now(); fm.matmul({ out, a, b, M, N, K }); t0 = Math.min(t0, performance.now() - t);
    t = performance.now(); fm.matmul({ out, a, b, bias, M, N, K }); t1 = Math.min(t1, performance.now() - t);
  }
  console.log(`${M}x${N}x${K}: no bias ${t0.toFixed(3)} ms, bias ${t1.toFixed(3)} ms`);
}
