/**
 * The seeds of GPT-2's dropout sites: one per site (the embeddings, each layer's attention probabilities and
 * residual branches, a LoRA adapter's inputs) and step, derived from the forward's `dropoutSeed`, so that every
 * mask is reproducible on every backend and none of one step repeats one of the next.
 * @module
 */

/**
 * How far apart two consecutive dropout seeds' site seeds lie: 64, or for models with more than 64 dropout
 * sites (3 per layer plus the embeddings: 22 layers or more) the smallest power of two at or above the site
 * count, so that no site of one seed takes the seed of a site of the next one. Models of up to 21 layers keep
 * 64, and with it the masks they had. `extraSites` counts sites beyond the base model's (a LoRA adapter's
 * inputs: 4 per layer).
 */
export function dropoutSiteStride(nLayer: number, opts: { extraSites?: number } = {}): number {
  const sites = 1 + 3 * nLayer + (opts.extraSites ?? 0);
  let stride = 64;
  while (stride < sites) stride *= 2;
  return stride;
}

/**
 * The seed of dropout site `site` (0 the embeddings, 1 + 3l layer l's attention probabilities, 2 + 3l and
 * 3 + 3l its two residual branches; with a LoRA adapter 1 + 3·n_layer + 4l + slot its inputs) under the forward's
 * `dropoutSeed`: (seed · stride + site) mod 2³², the
 * stride of {@link dropoutSiteStride}. Computed in u32 arithmetic (`Math.imul`), so it is exact for every
 * integer seed; only its value mod 2³² reaches the hash, as in the kernels. For a fixed layer count, the
 * site seeds of 2³² / stride consecutive dropout seeds are all distinct.
 */
export function dropoutSiteSeed(
  seed: number,
  site: number,
  nLayer: number,
  opts: { extraSites?: number } = {},
): number {
  if (!Number.isSafeInteger(seed)) throw new Error(`Cannot run GPT-2: dropoutSeed must be an integer, got ${seed}`);
  const stride = dropoutSiteStride(nLayer, opts);
  if (!(Number.isInteger(site) && site >= 0 && site < stride)) {
    throw new Error(`Cannot run GPT-2: dropout site must be an integer in [0, ${stride}), got ${site}`);
  }
  // seed mod 2³², as a u32 also for negative seeds (>>> 0 of a safe integer is exact)
  return (Math.imul(seed >>> 0, stride) + site) >>> 0;
}
