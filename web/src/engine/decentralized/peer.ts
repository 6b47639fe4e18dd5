/**
 * One WebRTC data channel to another peer with the browser's own RTCPeerConnection, speaking
 * simple-peer's signals as the 2.1.1 client and the Python client do: the peer with the larger
 * id offers; `{type: "offer" | "answer", sdp}` and trickled `{type: "candidate", candidate:
 * {candidate, sdpMLineIndex, sdpMid}}`; other signal types are ignored. One ordered, reliable
 * channel; messages are cut into DISCO chunks of 16 KiB and sent as the channel drains
 * (bufferedamountlow), received messages are reassembled, decoded and queued per type.
 */

import { ChunkError, DISCO_CHUNK_SIZE, MESSAGE_ID_LIMIT, Reassembler, chunkMessage, maxMessageSize } from "./chunking.js";
import { decodePeerMessage } from "./messages.js";
import type { PeerMessage, PeerMessageType } from "./messages.js";
import type { Signal } from "./signaling.js";

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const MAX_QUEUED_PER_TYPE = 4;

/** Addresses of a connection's selected ICE candidate pair. */
export interface SelectedPair {
  local: string;
  remote: string;
  protocol: string;
}

export class PeerGone extends Error {
  override name = "PeerGone";
}

interface Receiver {
  resolve: (message: PeerMessage) => void;
  reject: (error: Error) => void;
}

function randomLabel(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(20)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class PeerLink {
  private readonly pc: RTCPeerConnection;
  private channel: RTCDataChannel | null = null;
  private remoteDescribed = false;
  private pendingCandidates: RTCIceCandidateInit[] = [];
  private signals: Promise<void> = Promise.resolve();
  private readonly reassembler = new Reassembler();
  private readonly inbox = new Map<number, PeerMessage[]>();
  private readonly receivers = new Map<number, Receiver[]>();
  private openWaiters: ((open: boolean) => void)[] = [];
  private drainWaiters: (() => void)[] = [];
  private nextMessageID = 0;
  private sending: Promise<void> = Promise.resolve();
  private markClosed: () => void = () => undefined;
  /** Resolves once the link is closed (by either side). */
  readonly closedSignal = new Promise<void>((resolve) => {
    this.markClosed = resolve;
  });
  closeReason: string | null = null;

  constructor(
    readonly localID: number,
    readonly remoteID: number,
    private readonly sendSignal: (peer: number, signal: Signal) => void,
    iceServers: RTCIceServer[],
    readonly initiator: boolean,
  ) {
    this.pc = new RTCPeerConnection({ iceServers });
    this.pc.addEventListener("icecandidate", (event) => {
      const c = event.candidate;
      if (c === null || c.candidate === "" || this.closed) return;
      this.trySignal({
        type: "candidate",
        candidate: { candidate: c.candidate, sdpMLineIndex: c.sdpMLineIndex, sdpMid: c.sdpMid },
      });
    });
    this.pc.addEventListener("connectionstatechange", () => {
      const state = this.pc.connectionState;
      if (state === "failed" || state === "closed") this.close(`connection ${state}`);
    });
    this.pc.addEventListener("datachannel", (event) => {
      if (this.channel !== null) return;
      this.setupChannel(event.channel);
    });
  }

  get closed(): boolean {
    return this.closeReason !== null;
  }

  get isOpen(): boolean {
    return !this.closed && this.channel?.readyState === "open";
  }

  get negotiated(): boolean {
    return this.remoteDescribed;
  }

  private trySignal(signal: Signal): void {
    try {
      this.sendSignal(this.remoteID, signal);
    } catch (error) {
      this.close(`cannot signal: ${String(error)}`);
    }
  }

  /** As initiator: create the data channel and send the offer. */
  async start(): Promise<void> {
    if (!this.initiator) return;
    try {
      this.setupChannel(this.pc.createDataChannel(randomLabel(), { ordered: true }));
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.sendDescription();
    } catch (error) {
      this.close(`cannot create the offer: ${String(error)}`);
    }
  }

  private sendDescription(): void {
    const description = this.pc.localDescription;
    if (description !== null) this.trySignal({ type: description.type, sdp: description.sdp });
  }

  /** A signal relayed by the server (applied in order). */
  signal(signal: Signal): void {
    if (this.closed) return;
    this.signals = this.signals
      .then(() => this.apply(signal))
      .catch((error: unknown) => this.close(`bad signal: ${String(error)}`));
  }

  private async apply(signal: Signal): Promise<void> {
    const type = signal["type"];
    const sdp = signal["sdp"];
    if ((type === "offer" || type === "answer") && typeof sdp === "string") {
      if ((type === "offer") === this.initiator || this.remoteDescribed) return; // out of turn
      await this.pc.setRemoteDescription({ type, sdp });
      this.remoteDescribed = true;
      if (type === "offer") {
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.sendDescription();
      }
      for (const candidate of this.pendingCandidates.splice(0)) await this.pc.addIceCandidate(candidate);
    } else if (type === "candidate" || "candidate" in signal) {
      const body = signal["candidate"];
      if (typeof body !== "object" || body === null) return;
      const { candidate, sdpMLineIndex, sdpMid } = body as Record<string, unknown>;
      if (typeof candidate !== "string" || candidate === "") return;
      const init: RTCIceCandidateInit = {
        candidate,
        sdpMLineIndex: typeof sdpMLineIndex === "number" ? sdpMLineIndex : 0,
        sdpMid: typeof sdpMid === "string" ? sdpMid : null,
      };
      if (this.remoteDescribed) await this.pc.addIceCandidate(init);
      else this.pendingCandidates.push(init);
    }
  }

  private setupChannel(channel: RTCDataChannel): void {
    this.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = LOW_WATER;
    channel.addEventListener("open", () => {
      this.settleOpen(true);
      void this.selectedPair().catch(() => null); // noted while the path is known
    });
    channel.addEventListener("close", () => this.close("the data channel closed"));
    channel.addEventListener("bufferedamountlow", () => {
      for (const waiter of this.drainWaiters.splice(0)) waiter();
    });
    channel.addEventListener("message", (event: MessageEvent) => this.onChunk(event.data));
    if (channel.readyState === "open") this.settleOpen(true);
  }

  private settleOpen(open: boolean): void {
    for (const waiter of this.openWaiters.splice(0)) waiter(open);
  }

  /** True once the data channel is open; false on timeout or when the link closed. */
  waitOpen(timeoutMs: number): Promise<boolean> {
    if (this.isOpen) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(this.isOpen), Math.max(0, timeoutMs));
      this.openWaiters.push((open) => {
        clearTimeout(timer);
        resolve(open);
      });
    });
  }

  private onChunk(data: unknown): void {
    if (this.closed) return;
    if (!(data instanceof ArrayBuffer)) {
      this.close("received a text message; DISCO peers send binary chunks");
      return;
    }
    let message: Uint8Array | null;
    try {
      message = this.reassembler.feed(new Uint8Array(data));
    } catch (error) {
      this.close(`bad chunk: ${error instanceof ChunkError ? error.message : String(error)}`);
      return;
    }
    if (message === null) return;
    let decoded: PeerMessage;
    try {
      decoded = decodePeerMessage(message);
    } catch (error) {
      this.close(`bad message: ${String(error)}`);
      return;
    }
    const receivers = this.receivers.get(decoded.type);
    const receiver = receivers?.shift();
    if (receiver !== undefined) {
      receiver.resolve(decoded);
      return;
    }
    const queue = this.inbox.get(decoded.type) ?? [];
    if (queue.length >= MAX_QUEUED_PER_TYPE) {
      this.close(`sent too many messages of type ${decoded.type}`);
      return;
    }
    queue.push(decoded);
    this.inbox.set(decoded.type, queue);
  }

  /** Forget queued messages (of rounds nobody waits for any more); how many. */
  drain(): number {
    let n = 0;
    for (const queue of this.inbox.values()) n += queue.splice(0).length;
    return n;
  }

  /** The oldest message of `type` (rejects with PeerGone on close or timeout). */
  receive(type: PeerMessageType, timeoutMs: number): Promise<PeerMessage> {
    const queued = this.inbox.get(type)?.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new PeerGone(this.closeReason ?? "closed"));
    return new Promise<PeerMessage>((resolve, reject) => {
      const list = this.receivers.get(type) ?? [];
      const receiver: Receiver = {
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        const i = list.indexOf(receiver);
        if (i >= 0) list.splice(i, 1);
        reject(new PeerGone(`no message of type ${type} in time`));
      }, Math.max(0, timeoutMs));
      list.push(receiver);
      this.receivers.set(type, list);
    });
  }

  /** Throw when a message of `size` bytes cannot be chunked. */
  checkSendable(size: number): void {
    const limit = maxMessageSize(DISCO_CHUNK_SIZE);
    if (size > limit) throw new ChunkError(`a message of ${size} bytes exceeds the ${limit} bytes DISCO chunks can carry`);
  }

  /** Send one message (chunked; waits while the channel's buffer is full). */
  send(message: Uint8Array): Promise<void> {
    const id = this.nextMessageID;
    this.nextMessageID = (this.nextMessageID + 1) % MESSAGE_ID_LIMIT;
    const chunks = chunkMessage(id, message, DISCO_CHUNK_SIZE);
    const job = this.sending.then(async () => {
      for (const chunk of chunks) {
        const channel = this.channel;
        if (channel === null || channel.readyState !== "open") throw new PeerGone(this.closeReason ?? "the channel is not open");
        if (channel.bufferedAmount > HIGH_WATER) {
          await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
        }
        channel.send(chunk);
      }
    });
    this.sending = job.catch(() => undefined);
    return job;
  }

  /** The selected ICE candidate pair when last looked at (kept once the link closed). */
  lastPair: SelectedPair | null = null;

  /** The selected ICE candidate pair's addresses (for checks and status pages). */
  async selectedPair(): Promise<SelectedPair | null> {
    if (this.closed) return this.lastPair;
    const stats = await this.pc.getStats();
    let pairID: string | null = null;
    stats.forEach((report: { type?: string; selectedCandidatePairId?: string; state?: string; nominated?: boolean; id?: string }) => {
      if (report.type === "transport" && report.selectedCandidatePairId) pairID = report.selectedCandidatePairId;
    });
    if (pairID === null) {
      stats.forEach((report: { type?: string; state?: string; nominated?: boolean; id?: string }) => {
        if (report.type === "candidate-pair" && report.state === "succeeded" && report.nominated === true) pairID ??= report.id ?? null;
      });
    }
    if (pairID === null) return null;
    const pair = stats.get(pairID) as { localCandidateId?: string; remoteCandidateId?: string } | undefined;
    const local = stats.get(pair?.localCandidateId ?? "") as { address?: string; protocol?: string } | undefined;
    const remote = stats.get(pair?.remoteCandidateId ?? "") as { address?: string } | undefined;
    this.lastPair = { local: local?.address ?? "", remote: remote?.address ?? "", protocol: local?.protocol ?? "" };
    return this.lastPair;
  }

  /** Wait (at most `timeoutMs`) until what was sent left the channel's buffer. */
  async flush(timeoutMs: number): Promise<void> {
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs));
    await Promise.race([this.sending, timeout]);
    const channel = this.channel;
    if (channel === null || channel.readyState !== "open" || channel.bufferedAmount === 0) return;
    channel.bufferedAmountLowThreshold = 0;
    const drained = new Promise<void>((resolve) => channel.addEventListener("bufferedamountlow", () => resolve(), { once: true }));
    await Promise.race([drained, timeout]);
  }

  /** Close the connection; every waiter gets PeerGone. */
  close(reason = "closed"): void {
    if (this.closed) return;
    this.closeReason = reason;
    this.markClosed();
    this.settleOpen(false);
    for (const list of this.receivers.values()) for (const r of list.splice(0)) r.reject(new PeerGone(reason));
    for (const waiter of this.drainWaiters.splice(0)) waiter();
    this.reassembler.reset();
    try {
      this.channel?.close();
      this.pc.close();
    } catch {
      // already closed
    }
  }
}
