/**
 * The client-side privacy account, as the Python client keeps it (`disco.privacy`): ε spent
 * after k rounds of a Gaussian mechanism with noise multiplier z at the task's δ, and the plan
 * (clip radius, noise std, budget) a task's settings give.
 *
 * The account is dp-accounting's Rényi-DP accountant for an unsampled Gaussian mechanism,
 * reproduced exactly: RDP(α) = k·α / (2z²) at dp-accounting's default orders, converted to
 * (ε, δ) with its bound ε = RDP + log1p(-1/α) - log(δ·α)/(α - 1) (0 when δ² > 1 - e^-RDP),
 * the minimum over the orders. `noiseFor` finds the smallest z whose k rounds spend at most ε
 * (bisection), plus the Python side's 1e-4 margin.
 */

import { DiscoError } from "./errors.js";
import type { TrainingInformation } from "./types.js";

export const DEFAULT_DELTA = 1e-5;

/** dp-accounting's `DEFAULT_RDP_ORDERS`. */
const ORDERS: readonly number[] = [
  ...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10),
  ...Array.from({ length: 53 }, (_, x) => 11 + x),
  128, 256, 512, 1024,
];

/** Parameters the accountant cannot work with. */
export class PrivacyAccountingError extends DiscoError {
  override name = "PrivacyAccountingError";
}

function check(z: number, rounds: number, delta: number): void {
  if (!(z > 0 && Number.isFinite(z))) throw new PrivacyAccountingError(`the noise multiplier must be positive, got ${z}`);
  if (!(rounds >= 0)) throw new PrivacyAccountingError("the number of rounds must be non-negative");
  if (!(delta > 0 && delta < 1)) throw new PrivacyAccountingError(`δ must be in (0, 1), got ${delta}`);
}

/** ε spent by `rounds` Gaussian mechanisms with noise multiplier `z`, at δ (0 for no round). */
export function epsilon(z: number, rounds: number, delta = DEFAULT_DELTA): number {
  check(z, rounds, delta);
  if (rounds === 0) return 0;
  let best = Infinity;
  for (const order of ORDERS) {
    const rdp = (rounds * order) / (2 * z * z);
    let eps: number;
    if (delta * delta + Math.expm1(-rdp) > 0) eps = 0;
    else if (order > 1.01) eps = rdp + Math.log1p(-1 / order) - Math.log(delta * order) / (order - 1);
    else eps = Infinity;
    best = Math.min(best, eps);
  }
  return Math.max(0, best);
}

/** The smallest noise multiplier whose `rounds` compositions spend at most ε at δ. */
export function noiseFor(targetEpsilon: number, rounds: number, delta = DEFAULT_DELTA): number {
  if (!(targetEpsilon > 0 && Number.isFinite(targetEpsilon))) {
    throw new PrivacyAccountingError(`ε must be positive, got ${targetEpsilon}`);
  }
  check(1, rounds, delta);
  if (rounds === 0) throw new PrivacyAccountingError("calibrating noise needs at least one round");
  let low = 1e-3;
  let high = 1;
  while (epsilon(high, rounds, delta) > targetEpsilon) {
    low = high;
    high *= 2;
  }
  for (let i = 0; i < 60 && high - low > 1e-7; i++) {
    const middle = (low + high) / 2;
    if (epsilon(middle, rounds, delta) > targetEpsilon) low = middle;
    else high = middle;
  }
  return high + 1e-4; // the Python side's margin
}

/** A participant's clip radius, noise std and budget (`disco.privacy.ClientPlan`). */
export interface ClientPlan {
  clippingRadius: number | undefined;
  noiseStd: number | undefined;
  delta: number;
  budget: number | undefined;
  onExhausted: "stop" | "warn";
  /** z of the account (noise std over the replace-one sensitivity 2C); undefined without DP. */
  noiseMultiplier: number | undefined;
}

interface PrivacySettings {
  differentialPrivacy?: { clippingRadius?: number; epsilon?: number; delta?: number; rounds?: number };
  delta?: number;
  budget?: { epsilon?: number; onExhausted?: string };
}

/** Communication rounds a run will have (what an ε target is spread over). */
export function plannedRounds(
  samples: number, batchSize: number, epochs: number, roundDuration: number, rounds?: number,
): number {
  if (rounds !== undefined) return Math.max(1, rounds);
  const batches = epochs * Math.ceil(Math.max(1, samples) / Math.max(1, batchSize));
  return Math.max(1, Math.ceil(batches / Math.max(1, roundDuration)));
}

/** The plan for a task's `trainingInformation` (`disco.client.privacy.plan_for`). */
export function clientPlan(info: TrainingInformation, planned: number): ClientPlan {
  const privacy = (typeof info.privacy === "object" && info.privacy !== null ? info.privacy : {}) as PrivacySettings;
  const budget = typeof privacy.budget === "object" && privacy.budget !== null ? privacy.budget : undefined;
  const onExhausted = budget?.onExhausted === "warn" ? "warn" : "stop";
  const target = privacy.differentialPrivacy;
  if (typeof target === "object" && target !== null && target.epsilon !== undefined) {
    const radius = target.clippingRadius ?? 1;
    const delta = target.delta ?? privacy.delta ?? DEFAULT_DELTA;
    const z = noiseFor(target.epsilon, Math.max(1, target.rounds ?? planned), delta);
    return {
      clippingRadius: radius, noiseStd: 2 * radius * z, delta,
      budget: budget?.epsilon ?? target.epsilon, onExhausted, noiseMultiplier: z,
    };
  }
  const radius = info.clippingRadius !== undefined && info.clippingRadius > 0 ? info.clippingRadius : undefined;
  const std = info.noiseScale !== undefined && info.noiseScale > 0 ? info.noiseScale * (radius ?? 1) : undefined;
  const limit = budget?.epsilon;
  return {
    clippingRadius: radius,
    noiseStd: std,
    delta: privacy.delta ?? DEFAULT_DELTA,
    budget: limit !== undefined && Number.isFinite(limit) ? limit : undefined,
    onExhausted,
    noiseMultiplier: radius !== undefined && std !== undefined ? std / (2 * radius) : undefined,
  };
}
