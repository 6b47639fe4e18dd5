/**
 * Federated rounds of a task with `aggregationStrategy: "secure"`: the browser's counterpart of
 * `disco.client.secure_federated.SecureFederatedCommunicator`, speaking the same messages
 * (docs/protocol.md, types 20-27) so that browsers and Python clients share a round.
 *
 * Per round it joins the server's secure round with fresh keys for every curve this browser
 * offers (X25519 when WebCrypto has it, and P-256; the server picks the curve most members
 * offer), then answers the roster, relay and unmask messages with its `Participant`. What it
 * masks is [n·w, n] (weights times its sample count, then the count): the server learns only
 * Σ n_i·w_i and Σ n_i, the sample-weighted mean. Outcomes: "aggregated" (the new model comes
 * with it), "aborted" (too few members left: keep the local model, go on), a refused join
 * because the server's round moved (join that round with the same update).
 */

import type { Communicator, Exchange, Reporter } from "../communicator.js";
import { FederatedChannel, FederatedError, TimeoutError, Type } from "../federated.js";
import type { Message } from "../federated.js";
import { decodeNative } from "../weights.js";
import type { Weights } from "../weights.js";
import { supportedCurves } from "./keys.js";
import type { Curve } from "./keys.js";
import { Participant, Roster } from "./participant.js";
import type { PublicKeys } from "./participant.js";

const MAX_REJOINS = 3;

function int(value: unknown, fallback = 0): number {
  return typeof value === "number" && Number.isFinite(value) ? Math.floor(value) : fallback;
}

function reason(message: Message): string {
  return typeof message["error"] === "string" ? message["error"] : "no reason";
}

function bytes(value: unknown, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new FederatedError(`'${field}' is not binary`);
  return value;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** [n·w (all tensors flattened), n]: what a participant masks. */
export function weightedVector(weights: Weights, samples: number): Float64Array {
  const size = weights.reduce((total, w) => total + w.values.length, 0);
  const vector = new Float64Array(size + 1);
  let offset = 0;
  for (const w of weights) {
    for (let i = 0; i < w.values.length; i++) vector[offset + i] = (w.values[i] as number) * samples;
    offset += w.values.length;
  }
  vector[size] = samples;
  return vector;
}

/** The Roster and this member's number from a secAggRoster message. */
export function rosterFrom(message: Message): [Roster, number] {
  const participants = message["participants"];
  const curve = message["curve"];
  if (!Array.isArray(participants) || (curve !== "x25519" && curve !== "p256")) {
    throw new FederatedError("malformed roster");
  }
  const keys = new Map<number, PublicKeys>();
  for (const entry of participants as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 3) throw new FederatedError("malformed roster");
    keys.set(int(entry[0], -1), { cipher: bytes(entry[1], "cipher"), mask: bytes(entry[2], "mask") });
  }
  const roster = new Roster(
    bytes(message["session"], "session"),
    curve,
    keys,
    int(message["degree"], -1),
    int(message["threshold"], -1),
    int(message["vectorLength"], -1),
    int(message["fractionalBits"], -1),
  );
  return [roster, int(message["index"], -1)];
}

function pairsFrom(value: unknown): Map<number, Uint8Array> {
  if (!Array.isArray(value)) throw new FederatedError("expected a list of [number, bytes] pairs");
  const pairs = new Map<number, Uint8Array>();
  for (const item of value as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2) throw new FederatedError("expected [number, bytes] pairs");
    pairs.set(int(item[0], -1), bytes(item[1], "share"));
  }
  return pairs;
}

function pairList(pairs: ReadonlyMap<number, Uint8Array>): [number, Uint8Array][] {
  return [...pairs.entries()].sort((a, b) => a[0] - b[0]);
}

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? (value as unknown[]).map((v) => int(v, -1)) : [];
}

/** `Communicator` for secure federated rounds (module docstring). */
export class SecureFederatedCommunicator implements Communicator {
  /** The last secure round's outcome message (for pages and tests). */
  lastOutcome: Message | null = null;

  private constructor(
    private readonly channel: FederatedChannel,
    private readonly roundTimeoutMs: number,
    private readonly report: Reporter,
    readonly curves: readonly Curve[],
  ) {}

  /** Connect; the server's current round and global weights to start from. */
  static async connect(
    server: string,
    taskID: string,
    clientID: string,
    roundTimeoutMs: number,
    report: Reporter,
  ): Promise<{ communicator: SecureFederatedCommunicator; round: number; weights: Weights }> {
    report({ reason: "connecting", round: 0 });
    const curves = await supportedCurves();
    const channel = await FederatedChannel.open(server, taskID, clientID);
    const reply = await channel.request({ type: Type.LatestServerRound }, Type.LatestServerRound);
    const communicator = new SecureFederatedCommunicator(channel, roundTimeoutMs, report, curves);
    return { communicator, round: int(reply["round"]), weights: decodeNative(reply["weights"]) };
  }

  async exchange(weights: Weights, round: number, samples: number, epsilon?: number): Promise<Exchange> {
    const deadline = performance.now() + this.roundTimeoutMs;
    const count = Math.max(1, Math.floor(samples));
    const vector = weightedVector(weights, count);
    let joinRound = round;
    for (let attempt = 0; attempt <= MAX_REJOINS; attempt++) {
      const outcome = await this.oneRound(vector, joinRound, count, deadline, epsilon);
      this.lastOutcome = outcome;
      const status = outcome["status"];
      const serverRound = int(outcome["round"], joinRound);
      if (status === "aggregated") {
        const participants = int(outcome["participants"]);
        if (outcome["weights"] !== undefined && outcome["weights"] !== null) {
          return { weights: decodeNative(outcome["weights"]), participants, round: serverRound };
        }
        const reply = await this.channel.request({ type: Type.LatestServerRound }, Type.LatestServerRound);
        return { weights: decodeNative(reply["weights"]), participants, round: int(reply["round"], serverRound) };
      }
      if (status === "aborted") {
        console.warn(`secure round ${joinRound} abandoned by the server: ${reason(outcome)}`);
        return { weights: null, participants: 0, round: serverRound };
      }
      if (status === "refused" && serverRound !== joinRound) {
        joinRound = serverRound; // the server moved on: contribute to its round
        continue;
      }
      if (status === "timeout") {
        console.warn(`secure round ${joinRound} did not finish within ${this.roundTimeoutMs} ms`);
        return { weights: null, participants: 0, round: joinRound };
      }
      throw new FederatedError(`the server refused to aggregate securely: ${reason(outcome)}`);
    }
    return { weights: null, participants: 0, round: joinRound };
  }

  /** Join, then answer the stage messages until the outcome (or the deadline). */
  private async oneRound(
    vector: Float64Array, round: number, samples: number, deadline: number, epsilon: number | undefined,
  ): Promise<Message> {
    const participant = await Participant.create(this.curves);
    const keys: Record<string, { cipher: Uint8Array; mask: Uint8Array }> = {};
    for (const [curve, k] of participant.advertisement()) keys[curve] = { cipher: k.cipher, mask: k.mask };
    this.channel.dropPushed(); // frames of an earlier round this member no longer takes part in
    const join: Message = { type: Type.SecAggJoin, round, keys, numSamples: samples };
    if (epsilon !== undefined) join["epsilon"] = epsilon;
    this.channel.send(join);
    this.report({ reason: "participants", round });
    let session: Uint8Array | null = null;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) return { type: Type.SecAggOutcome, status: "timeout", round };
      let message: Message;
      try {
        message = await this.channel.nextPushed(left);
      } catch (error) {
        if (error instanceof TimeoutError) return { type: Type.SecAggOutcome, status: "timeout", round };
        throw error;
      }
      const ours = session !== null && message["session"] instanceof Uint8Array && sameBytes(message["session"], session);
      try {
        if (message.type === Type.SecAggRoster) {
          const [roster, index] = rosterFrom(message);
          if (roster.vectorLength !== vector.length) {
            throw new FederatedError(
              `the round aggregates ${roster.vectorLength} values, this model has ${vector.length}`,
            );
          }
          session = roster.session;
          const shares = await participant.share(roster, index);
          this.channel.send({
            type: Type.SecAggShares, session, shares: pairList(shares.sealed), commitment: shares.commitment,
          });
        } else if (message.type === Type.SecAggRelay && ours && session !== null) {
          const refused = await participant.receive(pairsFrom(message["shares"]), numbers(message["sharers"]));
          if (refused.length > 0) console.warn(`shares from participants ${refused.join(", ")} did not decrypt`);
          const masked = await participant.masked(vector);
          this.channel.send({ type: Type.SecAggMasked, session, masked });
          this.report({ reason: "aggregation", round });
        } else if (message.type === Type.SecAggUnmask && ours && session !== null) {
          const revealed = participant.reveal(numbers(message["survivors"]), numbers(message["dropped"]));
          this.channel.send({ type: Type.SecAggReveal, session, shares: pairList(revealed) });
        } else if (message.type === Type.SecAggOutcome) {
          if (message["status"] === "refused" && session !== null) {
            console.warn(`the server refused a message of this member: ${reason(message)}`);
            continue; // dropped from the round; its outcome still comes
          }
          return message;
        }
      } catch (error) {
        if (this.channel.failure !== null) throw this.channel.failure;
        // Stop taking part; the server counts this member as dropped.
        console.warn(`leaving secure round ${round}: ${error instanceof Error ? error.message : String(error)}`);
        session = null;
      }
    }
  }

  close(): Promise<void> {
    this.channel.close();
    return Promise.resolve();
  }
}
