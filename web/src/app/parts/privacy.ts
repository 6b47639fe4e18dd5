/**
 * What protects a participant's data in a task, in plain words: who sees the updates (the
 * server, peers, or only their sum under secure aggregation), the differential privacy applied
 * before an update leaves the device and its ε budget, and the server's own noise. Shown on the
 * task page and the train page, so that a person (or their data officer) knows before giving data.
 */

import { clientPlan } from "../../engine/index.js";
import type { ClientPlan, Task, TrainingInformation } from "../../engine/index.js";
import { h } from "../dom.js";

/** The ε a number reads as: enough digits to compare with a budget, no trailing noise. */
export function epsilonText(value: number): string {
  return value >= 10 ? value.toFixed(1) : value.toPrecision(2);
}

/** `privacy.central` of a task: the server's noise on the aggregate. */
function centralNoise(info: TrainingInformation): number | undefined {
  const central = info.privacy?.["central"];
  if (typeof central !== "object" || central === null) return undefined;
  const z = (central as { noiseMultiplier?: unknown }).noiseMultiplier;
  return typeof z === "number" && z > 0 ? z : undefined;
}

function robust(info: TrainingInformation): boolean {
  return info.aggregationStrategy === "byzantine" || info["aggregator"] === "byzantine" ||
    (info["byzantineRobustAggregator"] !== undefined && info["byzantineRobustAggregator"] !== false);
}

/** The participant's privacy plan (clip, noise, budget): what the engine will apply. */
export function privacyPlan(task: Task): ClientPlan {
  // The budget and δ do not depend on the number of rounds; the noise does, and is described
  // here by the task's ε target rather than by the noise of one particular run.
  return clientPlan(task.trainingInformation, 1);
}

/** The facts, one sentence each, in the order a person asks: data, updates, noise, budget. */
export function privacyFacts(task: Task): string[] {
  const info = task.trainingInformation;
  const facts = ["Your data stays on your device: only the model's weights are shared, never a row or an image."];
  if (info.scheme === "federated") {
    facts.push(info.aggregationStrategy === "secure"
      ? "Secure aggregation: the server only ever learns the sum of the participants' updates, never the update of one person."
      : "The server sees each participant's model update and combines them" +
        (robust(info) ? ", leaving out the influence of updates that stray far from the others (robust aggregation)." : "."));
  } else if (info.scheme === "decentralized") {
    facts.push(info.decentralizedSecure === true
      ? "Secure aggregation: the browsers exchange masked models, so each one only ever learns sums of the others' models."
      : "The browsers send their models to each other directly: the other participants see your model's weights.");
  }
  const plan = privacyPlan(task);
  const target = info.privacy?.differentialPrivacy?.epsilon;
  if (target !== undefined) {
    facts.push(`Differential privacy: each update is clipped and blurred with random noise before it leaves your device, ` +
      `so that all your updates together reveal at most ε = ${epsilonText(target)} about your data (δ = ${plan.delta}).`);
  } else if (plan.noiseStd !== undefined) {
    facts.push(`Differential privacy: each update is clipped to a size of ${plan.clippingRadius ?? 1} and random noise ` +
      `(standard deviation ${plan.noiseStd}) is added before it leaves your device; the page shows the privacy loss ε it adds up to, round by round.`);
  } else {
    facts.push("No noise is added to your updates (no differential privacy): a model update can reveal something about the data it was trained on.");
  }
  if (plan.budget !== undefined && plan.noiseMultiplier !== undefined) {
    facts.push(plan.onExhausted === "stop"
      ? `Your training stops before your privacy loss would pass ε = ${epsilonText(plan.budget)}.`
      : `You are warned when your privacy loss passes ε = ${epsilonText(plan.budget)}; the training goes on.`);
  }
  const central = centralNoise(info);
  if (central !== undefined && info.scheme === "federated") {
    facts.push(`The server also adds noise to the combined model (noise multiplier ${central}), so the published model reveals less about any one participant.`);
  }
  return facts;
}

/** The facts as a section of the task and train pages. */
export function privacySection(task: Task): HTMLElement {
  return h("section", { "data-privacy": "" },
    h("h2", null, "How your data is protected"),
    h("ul", { class: "facts" }, privacyFacts(task).map((fact) => h("li", null, fact))));
}
