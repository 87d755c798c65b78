/**
 * Small seeded generators (mulberry32), used where results must be reproducible: weight initialisation, new
 * embedding rows, sampling, and the tests' data.
 * @module
 */

/** Uniform numbers in [0, 1) from a 32-bit seed (mulberry32). */
export function uniformRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal numbers (Box–Muller over {@link uniformRng}, the open interval (0, 1)). */
export function normalRng(seed: number): () => number {
  const next = uniformRng(seed);
  const uniform = () => next() + 0.5 / 4294967296;
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform())), th = 2 * Math.PI * uniform();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}
