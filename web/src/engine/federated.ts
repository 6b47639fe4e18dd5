/**
 * A federated participant's WebSocket to the server, in the compact native encoding
 * (`/federated/{task}/{client}?encoding=native`, msgpack frames, float32 weights).
 *
 * A round is one request: post the update with its sample count and `awaitRound: true`
 * (`{type: 8}`); once accepted the server answers with the next global model
 * (`{type: 11, round, weights}`) as soon as its round passes the posted one, and a refused post
 * is acknowledged at once (`{type: 8, round, status, error}`). Meanwhile the server pushes round
 * status frames (`{type: 14, round, participants, contributions, minParticipants, waitingFor,
 * deadlineMs}`), which become the run's "waiting" events. Nothing polls: the engine only waits
 * for frames.
 */

import { decode, encode } from "@msgpack/msgpack";

import { DiscoError } from "./errors.js";
import type { Communicator, Exchange, Reporter } from "./communicator.js";
import { decodeNative, encodeNative } from "./weights.js";
import type { Weights } from "./weights.js";
import type { WaitingReason } from "./types.js";

/** Message type codes (`disco.protocol.types.MessageType`). */
export const Type = {
  ClientConnected: 0,
  PostWeights: 8,
  LatestServerRound: 11,
  PullServerStatistics: 13,
  RoundStatus: 14,
  SecAggJoin: 20,
  SecAggRoster: 21,
  SecAggShares: 22,
  SecAggRelay: 23,
  SecAggMasked: 24,
  SecAggUnmask: 25,
  SecAggReveal: 26,
  SecAggOutcome: 27,
} as const;

/** Frames the server pushes during a secure round (they queue until `nextPushed` takes them). */
const PUSHED: ReadonlySet<number> = new Set([Type.SecAggRoster, Type.SecAggRelay, Type.SecAggUnmask, Type.SecAggOutcome]);

/** A field of a decoded message as text, for messages to the person. */
function text(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value) ?? "";
}

export type Message = Record<string, unknown> & { type: number };

const REQUEST_TIMEOUT_MS = 30_000;

/** The server closed the connection or refused a message; the reason is in the message. */
export class FederatedError extends DiscoError {
  override name = "FederatedError";
}

/** `http(s)://host` + path -> `ws(s)://host/path`. */
export function websocketURL(server: string, path: string): string {
  const base = new URL(server, typeof location === "undefined" ? undefined : location.href);
  base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  return base.origin.replace(/^http/, "ws") + base.pathname.replace(/\/+$/, "") + path;
}

interface Waiter {
  types: readonly number[];
  accept: (message: Message) => boolean;
  resolve: (message: Message) => void;
  reject: (error: Error) => void;
}

/** One open federated connection: typed requests, answers matched by type. */
export class FederatedChannel {
  private waiters: Waiter[] = [];
  private closed: Error | null = null;
  private pushed: Message[] = [];
  private pushWaiter: Waiter | null = null;
  onStatus: ((status: Message) => void) | null = null;

  private constructor(private readonly ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.addEventListener("message", (event: MessageEvent) => this.receive(event.data));
    ws.addEventListener("close", (event: CloseEvent) => {
      this.fail(
        new FederatedError(
          `the server closed the connection (${event.code}: ${event.reason || "no reason"})`,
        ),
      );
    });
  }

  /** Connect and greet the server (`clientConnected`). */
  static async open(server: string, taskID: string, clientID: string): Promise<FederatedChannel> {
    const url = websocketURL(
      server,
      `/federated/${encodeURIComponent(taskID)}/${encodeURIComponent(clientID)}?encoding=native`,
    );
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener(
        "close",
        (event) => reject(new FederatedError(`cannot connect to ${url} (${event.code})`)),
        { once: true },
      );
    });
    const channel = new FederatedChannel(ws);
    await channel.request({ type: Type.ClientConnected }, Type.ClientConnected);
    return channel;
  }

  private receive(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) {
      this.fail(new FederatedError("the server sent a text frame"));
      this.ws.close(1003, "text frames are not supported");
      return;
    }
    let message: Message;
    try {
      const decoded = decode(new Uint8Array(data));
      if (typeof decoded !== "object" || decoded === null || !("type" in decoded)) {
        throw new Error("not a message");
      }
      message = decoded as Message;
    } catch (error) {
      this.fail(new FederatedError(`undecodable frame from the server: ${String(error)}`));
      this.ws.close(1007, "undecodable frame");
      return;
    }
    if (message.type === Type.RoundStatus) {
      this.onStatus?.(message);
      return;
    }
    if (PUSHED.has(message.type)) {
      const waiter = this.pushWaiter;
      this.pushWaiter = null;
      if (waiter !== null) waiter.resolve(message);
      else this.pushed.push(message);
      return;
    }
    const index = this.waiters.findIndex((w) => w.types.includes(message.type) && w.accept(message));
    if (index >= 0) {
      const [waiter] = this.waiters.splice(index, 1);
      waiter?.resolve(message);
    } else if (typeof message["error"] === "string") {
      const pending = this.waiters.find((w) => w.types.includes(message.type));
      if (pending !== undefined) {
        this.waiters.splice(this.waiters.indexOf(pending), 1);
        pending.reject(new FederatedError(`the server refused: ${message["error"]}`));
      }
    }
    // anything else (a late answer to a replaced waiting request) is ignored
  }

  private fail(error: Error): void {
    if (this.closed !== null) return;
    this.closed = error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    this.pushWaiter?.reject(error);
    this.pushWaiter = null;
  }

  /** Why the connection is unusable, or null while it is open. */
  get failure(): Error | null {
    return this.closed;
  }

  /** Forget the pushed frames nobody took (they belong to an earlier secure round). */
  dropPushed(): void {
    this.pushed = [];
  }

  /** Send a message that has no direct answer. */
  send(message: Message): void {
    if (this.closed !== null) throw this.closed;
    this.ws.send(encode(message));
  }

  /** The next frame the server pushed (secure rounds), oldest first; TimeoutError after `timeoutMs`. */
  nextPushed(timeoutMs: number): Promise<Message> {
    const queued = this.pushed.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed !== null) return Promise.reject(this.closed);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pushWaiter === waiter) this.pushWaiter = null;
        reject(new TimeoutError(`no message from the server within ${timeoutMs} ms`));
      }, Math.max(0, timeoutMs));
      const waiter: Waiter = {
        types: [],
        accept: () => true,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.pushWaiter = waiter;
    });
  }

  /** Send `message` and wait for a frame of type `answer` (or of one of these types) that
   * `accept` takes (or time out). */
  request(
    message: Message,
    answer: number | readonly number[],
    accept: (reply: Message) => boolean = () => true,
    timeoutMs: number = REQUEST_TIMEOUT_MS,
  ): Promise<Message> {
    if (this.closed !== null) return Promise.reject(this.closed);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new TimeoutError(`no answer of type ${String(answer)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        types: typeof answer === "number" ? [answer] : answer,
        accept,
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(waiter);
      this.ws.send(encode(message));
    });
  }

  close(): void {
    this.fail(new FederatedError("the connection was closed"));
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "left the task");
  }
}

/** A request that got no answer in time (the connection stays usable). */
export class TimeoutError extends DiscoError {
  override name = "TimeoutError";
}

function int(value: unknown, fallback = 0): number {
  return typeof value === "number" && Number.isFinite(value) ? Math.floor(value) : fallback;
}

const WAITING_REASONS: readonly string[] = ["participants", "contributions", "aggregation"];

/** Federated rounds: post the update, wait for the pushed aggregate, adopt it. */
export class FederatedCommunicator implements Communicator {
  private constructor(
    private readonly channel: FederatedChannel,
    private readonly roundTimeoutMs: number,
    private readonly report: Reporter,
  ) {
    channel.onStatus = (status) => {
      const reason = text(status["waitingFor"]);
      report({
        reason: (WAITING_REASONS.includes(reason) ? reason : "aggregation") as WaitingReason,
        round: int(status["round"]),
        participants: int(status["participants"]),
        contributions: int(status["contributions"]),
        minParticipants: int(status["minParticipants"]),
        deadlineMs: int(status["deadlineMs"]),
      });
    };
  }

  /** Connect; the server's current round and global weights to start from. */
  static async connect(
    server: string,
    taskID: string,
    clientID: string,
    roundTimeoutMs: number,
    report: Reporter,
  ): Promise<{ communicator: FederatedCommunicator; round: number; weights: Weights }> {
    report({ reason: "connecting", round: 0 });
    const channel = await FederatedChannel.open(server, taskID, clientID);
    const reply = await channel.request({ type: Type.LatestServerRound }, Type.LatestServerRound);
    const communicator = new FederatedCommunicator(channel, roundTimeoutMs, report);
    return { communicator, round: int(reply["round"]), weights: decodeNative(reply["weights"]) };
  }

  /** Post with `awaitRound`: the next round's model once accepted, else the acknowledgement of
   * the refusal; TimeoutError when neither comes within the round timeout. */
  private async post(weights: Weights, round: number, samples: number, epsilon?: number): Promise<Message> {
    const message: Message = {
      type: Type.PostWeights,
      weights: encodeNative(weights),
      round,
      numSamples: samples,
      awaitRound: true,
    };
    if (epsilon !== undefined) message["epsilon"] = epsilon;
    return this.channel.request(
      message,
      [Type.PostWeights, Type.LatestServerRound],
      (answer) => answer.type !== Type.LatestServerRound || int(answer["round"]) > round,
      this.roundTimeoutMs,
    );
  }

  async exchange(weights: Weights, round: number, samples: number, epsilon?: number): Promise<Exchange> {
    let answer: Message;
    try {
      answer = await this.post(weights, round, samples, epsilon);
      if (answer.type === Type.PostWeights && (answer["status"] === "stale" || answer["status"] === "future")) {
        // The server moved on (or we are ahead): contribute to its current round instead.
        round = int(answer["round"], round);
        answer = await this.post(weights, round, samples, epsilon);
      }
      if (answer.type === Type.PostWeights) {
        if ((answer["status"] ?? "accepted") !== "accepted") {
          throw new FederatedError(
            `the server refused the update (${text(answer["status"])}): ${text(answer["error"])}`,
          );
        }
        // A server that acknowledges even so: wait for the round with a waiting request.
        answer = await this.channel.request(
          { type: Type.LatestServerRound, afterRound: round },
          Type.LatestServerRound,
          (reply) => int(reply["round"]) > round,
          this.roundTimeoutMs,
        );
      }
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      // No aggregate in time: keep the local model and go on with the server's round.
      const stats = await this.statistics();
      return { weights: null, participants: int(stats["currentNumberOfParticipants"]), round: int(stats["round"], round) };
    }
    const stats = await this.statistics();
    const participants = int(stats["lastRoundParticipants"], int(stats["currentNumberOfParticipants"]));
    return { weights: decodeNative(answer["weights"]), participants, round: int(answer["round"]) };
  }

  private async statistics(): Promise<Record<string, unknown>> {
    const reply = await this.channel.request({ type: Type.PullServerStatistics }, Type.PullServerStatistics);
    const stats = reply["statistics"];
    return typeof stats === "object" && stats !== null ? (stats as Record<string, unknown>) : {};
  }

  close(): Promise<void> {
    this.channel.close();
    return Promise.resolve();
  }
}
