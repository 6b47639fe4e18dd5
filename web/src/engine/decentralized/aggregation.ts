/**
 * Decentralized rounds among the peers of a round, as the Python client runs them with JS peers
 * (`disco.client.decentralized.clear_text` / `secure`, DISCO-compatible mode):
 *
 * - clear text: weights to every peer (type 5), each averages its own and those received (plain
 *   mean); a peer that does not deliver before the deadline is left out;
 * - secure (DISCO's secure aggregation): the update is split into n additive shares, n - 1 of
 *   them uniform in (-maxShareValue, maxShareValue), the last = update - their sum; the i-th is
 *   sent to peer i (type 6), the kept share plus the received ones make a partial sum sent to
 *   everyone (type 7), and the sum of the n partial sums over n is the mean. Computed in float64;
 *   every share and partial sum must arrive, or the round fails (keep the local model).
 */

import { PeerGone } from "./peer.js";
import type { PeerLink } from "./peer.js";
import { PeerMessageType, checkTensors, encodePeerMessage } from "./messages.js";
import type { PeerMessage } from "./messages.js";
import type { Weights } from "../weights.js";

export const DEFAULT_MAX_SHARE_VALUE = 100;

export interface RoundOutcome {
  weights: Weights | null;
  participants: number;
  mode: "clear-text" | "secure";
  failure: string | null;
  leftOut: number[];
}

type Flat = { shape: number[]; values: Float64Array }[];

function remaining(deadline: number): number {
  return Math.max(0, deadline - performance.now());
}

function toFlat(weights: Weights): Flat {
  return weights.map((w) => ({ shape: [...w.shape], values: Float64Array.from(w.values) }));
}

function toWeights(flat: Flat): Weights {
  return flat.map((t) => ({ shape: [...t.shape], values: Float32Array.from(t.values) }));
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Clear-text round: exchange weights with every peer until the deadline; average what came. */
export async function clearTextRound(own: Weights, peers: readonly PeerLink[], deadline: number): Promise<RoundOutcome> {
  if (peers.length === 0) return { weights: own, participants: 1, mode: "clear-text", failure: null, leftOut: [] };
  const results = await Promise.allSettled(
    peers.map(async (peer): Promise<PeerMessage> => {
      if (!(await peer.waitOpen(remaining(deadline)))) throw new PeerGone("did not connect in time");
      const message = encodePeerMessage(PeerMessageType.Weights, peer.remoteID, own);
      peer.checkSendable(message.length);
      await peer.send(message);
      const received = await peer.receive(PeerMessageType.Weights, remaining(deadline));
      checkTensors(received.tensors, own);
      return received;
    }),
  );
  const updates: Flat[] = [toFlat(own)];
  const leftOut: number[] = [];
  results.forEach((result, i) => {
    const peer = peers[i];
    if (peer === undefined) return;
    if (result.status === "fulfilled") updates.push(result.value.tensors);
    else {
      leftOut.push(peer.remoteID);
      console.warn(`clear-text round: no usable weights from peer ${peer.remoteID}: ${describe(result.reason)}`);
    }
  });
  if (updates.length === 1) {
    return { weights: null, participants: 1, mode: "clear-text", failure: "no weights arrived from any peer", leftOut };
  }
  const mean = toFlat(own).map((t, k) => {
    const sum = new Float64Array(t.values.length);
    for (const update of updates) {
      const values = update[k]?.values ?? new Float64Array(sum.length);
      for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] ?? 0) + (values[j] ?? 0);
    }
    return { shape: t.shape, values: sum.map((v) => v / updates.length) };
  });
  return {
    weights: toWeights(mean),
    participants: updates.length,
    mode: "clear-text",
    failure: leftOut.length > 0 ? `peers ${leftOut.join(", ")} left out` : null,
    leftOut,
  };
}

/** Uniform numbers in (-bound, bound) from the browser's CSPRNG. */
function uniformShares(size: number, bound: number): Float64Array {
  const out = new Float64Array(size);
  const words = new Uint32Array(Math.min(size, 16384) * 2);
  for (let start = 0; start < size; start += words.length / 2) {
    crypto.getRandomValues(words);
    for (let i = 0; i < words.length / 2 && start + i < size; i++) {
      // 53 random bits -> [0, 1) -> (-bound, bound)
      const u = ((words[2 * i] ?? 0) * 2 ** 21 + ((words[2 * i + 1] ?? 0) >>> 11)) / 2 ** 53;
      out[start + i] = (2 * u - 1) * bound;
    }
  }
  return out;
}

function addInto(target: Flat, source: Flat): void {
  target.forEach((t, k) => {
    const values = source[k]?.values;
    if (values === undefined) return;
    for (let j = 0; j < t.values.length; j++) t.values[j] = (t.values[j] ?? 0) + (values[j] ?? 0);
  });
}

async function sendAll(type: PeerMessageType, payloads: Map<number, Flat>, peers: readonly PeerLink[]): Promise<void> {
  const results = await Promise.allSettled(
    peers.map(async (peer) => {
      const message = encodePeerMessage(type, peer.remoteID, payloads.get(peer.remoteID) ?? []);
      peer.checkSendable(message.length);
      await peer.send(message);
    }),
  );
  const failed = results.map((r, i) => (r.status === "rejected" ? `peer ${peers[i]?.remoteID}: ${describe(r.reason)}` : null)).filter((x) => x !== null);
  if (failed.length > 0) throw new Error(`sending type ${type}: ${failed.join("; ")}`);
}

async function receiveAll(type: PeerMessageType, peers: readonly PeerLink[], own: Weights, deadline: number): Promise<Flat[]> {
  const results = await Promise.allSettled(
    peers.map(async (peer) => {
      const message = await peer.receive(type, remaining(deadline));
      checkTensors(message.tensors, own);
      return message.tensors;
    }),
  );
  const failed = results.map((r, i) => (r.status === "rejected" ? `peer ${peers[i]?.remoteID}: ${describe(r.reason)}` : null)).filter((x) => x !== null);
  if (failed.length > 0) throw new Error(`receiving type ${type}: ${failed.join("; ")}`);
  return results.map((r) => (r.status === "fulfilled" ? r.value : []));
}

/** DISCO-compatible secure aggregation with every peer of the round (all must take part). */
export async function secureRound(
  own: Weights,
  peers: readonly PeerLink[],
  deadline: number,
  maxShareValue: number = DEFAULT_MAX_SHARE_VALUE,
): Promise<RoundOutcome> {
  const n = peers.length + 1;
  if (peers.length === 0) return { weights: own, participants: 1, mode: "secure", failure: null, leftOut: [] };
  try {
    const secret = toFlat(own);
    const shares: Flat[] = Array.from({ length: n }, () => secret.map((t) => ({ shape: t.shape, values: new Float64Array(t.values.length) })));
    secret.forEach((t, k) => {
      const last = Float64Array.from(t.values);
      for (let i = 0; i < n - 1; i++) {
        const random = uniformShares(t.values.length, maxShareValue);
        const share = shares[i]?.[k];
        if (share !== undefined) share.values = random;
        for (let j = 0; j < last.length; j++) last[j] = (last[j] ?? 0) - (random[j] ?? 0);
      }
      const final = shares[n - 1]?.[k];
      if (final !== undefined) final.values = last;
    });
    // shares[n-1] (update minus the random ones) is kept; peer i gets shares[i].
    const kept = shares[n - 1] ?? [];
    await sendAll(PeerMessageType.Shares, new Map(peers.map((p, i) => [p.remoteID, shares[i] ?? []])), peers);
    const received = await receiveAll(PeerMessageType.Shares, peers, own, deadline);
    const partial = kept.map((t) => ({ shape: t.shape, values: Float64Array.from(t.values) }));
    for (const share of received) addInto(partial, share);
    await sendAll(PeerMessageType.PartialSums, new Map(peers.map((p) => [p.remoteID, partial])), peers);
    const partials = await receiveAll(PeerMessageType.PartialSums, peers, own, deadline);
    const total = partial.map((t) => ({ shape: t.shape, values: Float64Array.from(t.values) }));
    for (const p of partials) addInto(total, p);
    const mean = total.map((t) => ({ shape: t.shape, values: t.values.map((v) => v / n) }));
    return { weights: toWeights(mean), participants: n, mode: "secure", failure: null, leftOut: [] };
  } catch (error) {
    return { weights: null, participants: n, mode: "secure", failure: describe(error), leftOut: [] };
  }
}
