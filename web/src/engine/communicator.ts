/** How a training run shares its weights each round: federated, decentralized or not at all. */

import type { TrainingEvents } from "./types.js";
import type { Weights } from "./weights.js";

/** The outcome of one communication round. */
export interface Exchange {
  /** Aggregated weights; null when nothing came back in time (keep the local ones). */
  weights: Weights | null;
  participants: number;
  /** The round this participant contributes to next. */
  round: number;
}

/** Shares this participant's weights for a round and returns the aggregate. */
export interface Communicator {
  /** `epsilon`: the client-side DP ε spent once this update is out (reported to the server). */
  exchange(weights: Weights, round: number, samples: number, epsilon?: number): Promise<Exchange>;
  /** Leave: close the connections (after delivering what is on its way, bounded in time). */
  close(): Promise<void>;
}

/** Where a communicator reports what it waits for. */
export type Reporter = (event: TrainingEvents["waiting"]) => void;

/** Training alone: every round keeps the local model. */
export class LocalCommunicator implements Communicator {
  exchange(_weights: Weights, round: number): Promise<Exchange> {
    return Promise.resolve({ weights: null, participants: 1, round: round + 1 });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
