/**
 * The decentralized participant (as `disco.client.decentralized.communicator`): each round,
 * drop what is left of earlier rounds, say ready, get the round's peers from the server,
 * connect to them (reusing earlier links; the larger id offers) and run the clear-text or
 * secure round. Everything is bounded by the round timeout; a link that failed a round is
 * closed so that none of its late messages can be taken for a later round's.
 */

import type { Communicator, Exchange, Reporter } from "../communicator.js";
import { DiscoError } from "../errors.js";
import type { Task } from "../types.js";
import type { Weights } from "../weights.js";
import { DEFAULT_MAX_SHARE_VALUE, clearTextRound, secureRound } from "./aggregation.js";
import type { RoundOutcome } from "./aggregation.js";
import { PeerLink } from "./peer.js";
import { SignalingClient } from "./signaling.js";
import type { Signal } from "./signaling.js";

const MAX_LINKS = 1024;
const FLUSH_TIMEOUT_MS = 5_000;
/**
 * How long a leaving peer keeps its links open for the others to take its last message: DISCO
 * has no acknowledgement, and a peer told by the server that we left drops our link at once,
 * with whatever it had not yet decoded. Ends early once every peer closed its side.
 */
const LINGER_MS = 2_000;

export interface DecentralizedOptions {
  server: string;
  task: Task;
  secure: boolean;
  roundTimeoutMs: number;
  iceServers: RTCIceServer[];
  report?: Reporter;
  clientID?: string;
}

/** One peer's selected ICE candidate pair (see `DecentralizedCommunicator.connections`). */
export interface PeerConnectionInfo {
  peer: number;
  open: boolean;
  local: string;
  remote: string;
  protocol: string;
}

function randomID(): string {
  return crypto.randomUUID();
}

export class DecentralizedCommunicator implements Communicator {
  private signaling: SignalingClient | null = null;
  private readonly links = new Map<number, PeerLink>();
  private busy = false;
  lastOutcome: RoundOutcome | null = null;

  private constructor(private readonly options: DecentralizedOptions) {}

  /** Connect to the server's signaling (a peer id); rounds start with `exchange`. */
  static async connect(options: DecentralizedOptions): Promise<DecentralizedCommunicator> {
    const communicator = new DecentralizedCommunicator(options);
    options.report?.({ reason: "connecting", round: 0 });
    await communicator.ensureSignaling();
    return communicator;
  }

  /** This peer's id on the server (after `connect`). */
  get peerID(): number | null {
    return this.signaling?.id ?? null;
  }

  private get maxShareValue(): number {
    const value = this.options.task.trainingInformation.maxShareValue;
    return typeof value === "number" && value > 0 ? value : DEFAULT_MAX_SHARE_VALUE;
  }

  private async ensureSignaling(): Promise<SignalingClient> {
    if (this.signaling?.connected === true) return this.signaling;
    if (this.signaling !== null) this.closeLinks("signaling reconnected");
    this.signaling = await SignalingClient.connect(
      this.options.server,
      this.options.task.taskID,
      this.options.clientID ?? randomID(),
      (peer, signal) => this.onSignal(peer, signal),
      (peer, reason) => this.links.get(peer)?.close(`unreachable: ${reason}`),
    );
    return this.signaling;
  }

  private newLink(remote: number, initiator: boolean): PeerLink {
    const signaling = this.signaling;
    if (signaling === null) throw new DiscoError("not connected");
    const link = new PeerLink(signaling.id, remote, (peer, signal) => signaling.sendSignal(peer, signal), this.options.iceServers, initiator);
    this.links.set(remote, link);
    return link;
  }

  private onSignal(peer: number, signal: Signal): void {
    const own = this.signaling?.id;
    if (own === undefined || peer === own) return;
    let link = this.links.get(peer);
    const isOffer = signal["type"] === "offer" && typeof signal["sdp"] === "string";
    if (link !== undefined && isOffer && (link.closed || link.negotiated)) {
      link.close("replaced by a new offer"); // the peer starts over
      this.links.delete(peer);
      link = undefined;
    }
    if (link === undefined || link.closed) {
      if (!isOffer || this.links.size >= MAX_LINKS) return; // only offers open links
      link = this.newLink(peer, false);
    }
    link.signal(signal);
  }

  async exchange(weights: Weights, round: number): Promise<Exchange> {
    if (this.busy) throw new DiscoError("one decentralized round at a time");
    this.busy = true;
    try {
      const outcome = await this.round(weights, round, performance.now() + this.options.roundTimeoutMs);
      this.lastOutcome = outcome;
      if (outcome.failure !== null) console.warn(`round ${round} (${outcome.mode}): ${outcome.failure}`);
      return { weights: outcome.weights, participants: outcome.participants, round: round + 1 };
    } finally {
      this.busy = false;
    }
  }

  private async round(weights: Weights, round: number, deadline: number): Promise<RoundOutcome> {
    const mode = this.options.secure ? "secure" : "clear-text";
    const fail = (failure: string): RoundOutcome => ({ weights: null, participants: 1, mode, failure, leftOut: [] });
    let signaling: SignalingClient;
    try {
      signaling = await this.ensureSignaling();
    } catch (error) {
      return fail(`no signaling: ${String(error)}`);
    }
    // Before saying ready, whatever is queued belongs to rounds we are no longer in.
    signaling.drainRounds();
    for (const [remote, link] of this.links) {
      link.drain();
      if (link.closed) this.links.delete(remote);
    }
    let peers: number[];
    try {
      signaling.sendReady();
      this.options.report?.({ reason: "peers", round });
      peers = await signaling.nextRound(deadline - performance.now());
    } catch (error) {
      return fail(`no round started: ${String(error)}`);
    }
    if (peers.includes(signaling.id)) return fail("the server listed our own id among the peers");
    this.options.report?.({ reason: "aggregation", round, participants: peers.length + 1 });
    const links = await Promise.all(
      peers.map(async (remote) => {
        let link = this.links.get(remote);
        if (link === undefined || link.closed) {
          link = this.newLink(remote, remote < signaling.id); // the 2.1.1 rule: the larger id offers
          await link.start();
        }
        return link;
      }),
    );
    let outcome: RoundOutcome;
    if (this.options.secure) {
      const opened = await Promise.all(links.map((link) => link.waitOpen(deadline - performance.now())));
      const missing = links.filter((_, i) => !opened[i]).map((link) => link.remoteID);
      outcome =
        missing.length > 0
          ? { weights: null, participants: peers.length + 1, mode, failure: `could not connect to peers ${missing.join(", ")}`, leftOut: [] }
          : await secureRound(weights, links, deadline, this.maxShareValue);
    } else {
      outcome = await clearTextRound(weights, links, deadline);
    }
    // note each connection's path while it is open (peers may close theirs right after a round)
    await Promise.all(links.map((link) => link.selectedPair().catch(() => null)));
    if (outcome.weights === null) {
      for (const link of links) link.close(`round failed: ${outcome.failure ?? ""}`);
    } else {
      for (const link of links) if (outcome.leftOut.includes(link.remoteID)) link.close("left out of a round");
    }
    return outcome;
  }

  /** The selected candidate pair of every peer connection. */
  async connections(): Promise<PeerConnectionInfo[]> {
    return Promise.all(
      [...this.links.entries()].map(async ([peer, link]) => {
        const pair = await link.selectedPair();
        return { peer, open: link.isOpen, local: pair?.local ?? "", remote: pair?.remote ?? "", protocol: pair?.protocol ?? "" };
      }),
    );
  }

  private closeLinks(reason: string): void {
    for (const link of this.links.values()) link.close(reason);
    this.links.clear();
  }

  /** Deliver what is still on its way (bounded), then close every link and the signaling. */
  async close(): Promise<void> {
    const links = [...this.links.values()];
    await Promise.all(links.map((link) => link.flush(FLUSH_TIMEOUT_MS)));
    const open = links.filter((link) => link.isOpen);
    if (open.length > 0) {
      await Promise.race([
        Promise.all(open.map((link) => link.closedSignal)),
        new Promise((resolve) => setTimeout(resolve, LINGER_MS)),
      ]);
    }
    this.closeLinks("left the task");
    this.signaling?.close();
    this.signaling = null;
  }
}
