/**
 * The decentralized participant's WebSocket to the server (`/decentralized/{task}/{client}`):
 * a peer id (`{type: 0}` -> `{type: 1, id}`), WebRTC signals relayed both ways (`{type: 2,
 * peer, signal}`), readiness (`{type: 3}`) and the peers of each round (`{type: 4, peers}`;
 * with `?peerUpdates=1` also `{type: 4, peers, update: true}` when a peer of the round leaves).
 * A signal the server cannot deliver comes back as `{type: 1, id, peer, error}`.
 */

import { decode, encode } from "@msgpack/msgpack";

import { DiscoError } from "../errors.js";
import { websocketURL } from "../federated.js";

export type Signal = Record<string, unknown>;

export class SignalingError extends DiscoError {
  override name = "SignalingError";
}

function peerID(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : null;
}

/** One open signaling connection. */
export class SignalingClient {
  private rounds: number[][] = [];
  private roundWaiter: ((peers: number[] | Error) => void) | null = null;
  private roundPeers = new Set<number>();
  closedReason: string | null = null;

  private constructor(
    private readonly ws: WebSocket,
    readonly id: number,
    private readonly onSignal: (peer: number, signal: Signal) => void,
    private readonly onPeerGone: (peer: number, reason: string) => void,
  ) {
    ws.addEventListener("message", (event: MessageEvent) => this.receive(event.data));
    ws.addEventListener("close", (event: CloseEvent) => {
      this.closedReason = `the server closed the connection (${event.code}: ${event.reason || "no reason"})`;
      this.roundWaiter?.(new SignalingError(this.closedReason));
      this.roundWaiter = null;
    });
  }

  /** Connect and get this peer's id. */
  static async connect(
    server: string,
    taskID: string,
    clientID: string,
    onSignal: (peer: number, signal: Signal) => void,
    onPeerGone: (peer: number, reason: string) => void,
    timeoutMs = 30_000,
  ): Promise<SignalingClient> {
    const url = websocketURL(
      server,
      `/decentralized/${encodeURIComponent(taskID)}/${encodeURIComponent(clientID)}?peerUpdates=1`,
    );
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const id = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.close();
        reject(new SignalingError(`${url}: no peer id from the server in time`));
      }, timeoutMs);
      ws.addEventListener("open", () => ws.send(encode({ type: 0 })), { once: true });
      const onMessage = (event: MessageEvent): void => {
        if (!(event.data instanceof ArrayBuffer)) return;
        const message = decode(new Uint8Array(event.data)) as Record<string, unknown>;
        const id = peerID(message["id"]);
        if (message["type"] === 1 && !("error" in message) && id !== null) {
          clearTimeout(timer);
          ws.removeEventListener("message", onMessage);
          resolve(id);
        }
      };
      ws.addEventListener("message", onMessage);
      ws.addEventListener("close", (event) => {
        clearTimeout(timer);
        reject(new SignalingError(`cannot connect to ${url} (${event.code}: ${event.reason})`));
      }, { once: true });
    });
    return new SignalingClient(ws, id, onSignal, onPeerGone);
  }

  get connected(): boolean {
    return this.closedReason === null && this.ws.readyState === WebSocket.OPEN;
  }

  private receive(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return;
    let message: Record<string, unknown>;
    try {
      message = decode(new Uint8Array(data)) as Record<string, unknown>;
    } catch {
      return;
    }
    const type = message["type"];
    if (type === 2) {
      const peer = peerID(message["peer"]);
      const signal = message["signal"];
      if (peer !== null && typeof signal === "object" && signal !== null) this.onSignal(peer, signal as Signal);
    } else if (type === 4) {
      const raw = message["peers"];
      const peers = Array.isArray(raw) ? raw.map(peerID) : null;
      if (peers === null || peers.some((p) => p === null)) return;
      const listed = peers as number[];
      if (message["update"] === true) {
        for (const gone of this.roundPeers) if (!listed.includes(gone)) this.onPeerGone(gone, "left the round");
        this.roundPeers = new Set(listed);
        return;
      }
      this.roundPeers = new Set(listed);
      if (this.roundWaiter !== null) {
        this.roundWaiter(listed);
        this.roundWaiter = null;
      } else {
        this.rounds.push(listed);
      }
    } else if (type === 1 && "error" in message) {
      const peer = peerID(message["peer"]);
      if (peer !== null) this.onPeerGone(peer, String(message["error"]));
    }
  }

  private send(message: Record<string, unknown>): void {
    if (!this.connected) throw new SignalingError(this.closedReason ?? "not connected");
    this.ws.send(encode(message));
  }

  sendSignal(peer: number, signal: Signal): void {
    this.send({ type: 2, peer, signal });
  }

  sendReady(): void {
    this.send({ type: 3 });
  }

  /** Forget round announcements nobody waited for. */
  drainRounds(): number {
    const n = this.rounds.length;
    this.rounds = [];
    return n;
  }

  /** The peers of the next round (rejects on timeout or when the connection closes). */
  nextRound(timeoutMs: number): Promise<number[]> {
    const queued = this.rounds.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closedReason !== null) return Promise.reject(new SignalingError(this.closedReason));
    return new Promise<number[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.roundWaiter = null;
        reject(new SignalingError("the server announced no round in time"));
      }, Math.max(0, timeoutMs));
      this.roundWaiter = (peers) => {
        clearTimeout(timer);
        if (peers instanceof Error) reject(peers);
        else resolve(peers);
      };
    });
  }

  close(): void {
    this.closedReason ??= "closed";
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "left the task");
  }
}
