/**
 * DISCO's client-side differential privacy on a round's update, as the Python client applies it
 * (`disco.client.privacy`): the update `new - previous` is clipped to an L2 norm of
 * `clippingRadius` C, then Gaussian noise of standard deviation `noiseStd` is added to every
 * coordinate (the plan's: σ·C for DISCO's `noiseScale` σ, σ alone without clipping, or calibrated
 * for an ε target, see `accountant.ts`). Computed in float64, sent as float32.
 */

import type { Random } from "./random.js";
import type { Weights } from "./weights.js";

/** Weights to send: `previous + clip(new - previous) + noise`; `next` itself when both unset. */
export function privatize(
  next: Weights,
  previous: Weights,
  clippingRadius: number | undefined,
  noiseStd: number | undefined,
  random: Random,
): Weights {
  if (clippingRadius === undefined && noiseStd === undefined) return next;
  const diffs = next.map((w, i) => {
    const before = previous[i]?.values ?? new Float32Array(w.values.length);
    return Float64Array.from(w.values, (v, j) => v - (before[j] ?? 0));
  });
  if (clippingRadius !== undefined) {
    if (!(clippingRadius > 0)) throw new Error("clippingRadius must be positive");
    let squares = 0;
    for (const d of diffs) for (const v of d) squares += v * v;
    const factor = Math.max(1, Math.sqrt(squares) / clippingRadius);
    for (const d of diffs) for (let j = 0; j < d.length; j++) d[j] = (d[j] ?? 0) / factor;
  }
  if (noiseStd !== undefined) {
    if (!(noiseStd >= 0)) throw new Error("the noise must be non-negative");
    const std = noiseStd;
    for (const d of diffs) for (let j = 0; j < d.length; j++) d[j] = (d[j] ?? 0) + std * random.normal();
  }
  return next.map((w, i) => {
    const before = previous[i]?.values ?? new Float32Array(w.values.length);
    const d = diffs[i] ?? new Float64Array(w.values.length);
    return { shape: [...w.shape], values: Float32Array.from(d, (v, j) => (before[j] ?? 0) + v) };
  });
}
