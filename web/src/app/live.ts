/**
 * The server's live task snapshots (`GET /events`, Server-Sent Events): pushed by the server
 * when a round completes or clients come and go; no polling. One EventSource per page.
 */

/** One completed round (`GET /tasks/{id}/history` entries, the snapshots' `lastRounds`). */
export interface CompletedRound {
  round: number;
  /** Unix time (seconds). */
  time: number;
  contributions: number;
  seconds: number;
}

/** What the server pushes about one task (see disco.server.http.live). */
export interface TaskSnapshot {
  taskID: string;
  title: string;
  scheme: string;
  dataType: string;
  round: number;
  connected: { federated: number; decentralized: number };
  federated: {
    round: number;
    connected: number;
    participants: number;
    contributions: number;
    minParticipants: number;
    waitingFor: "participants" | "contributions" | "aggregation";
    deadlineMs: number | null;
  } | null;
  decentralized: {
    connected: number;
    ready: number;
    minimumReady: number | null;
    roundsStarted: number;
    latestRoundPeers: number;
    completedRounds: CompletedRound[];
  } | null;
  lastRounds: CompletedRound[];
  changes: string[];
}

export type LiveState = "connecting" | "live" | "reconnecting";

/**
 * Follow every task's snapshot: `onTask` for each event, `onState` when the stream opens or
 * drops (the browser reconnects by itself). Stops when `signal` aborts.
 */
export function followTasks(
  signal: AbortSignal,
  onTask: (snapshot: TaskSnapshot) => void,
  onState: (state: LiveState) => void = () => undefined,
): void {
  const source = new EventSource("/events");
  onState("connecting");
  source.addEventListener("open", () => onState("live"));
  source.addEventListener("error", () => onState("reconnecting"));
  source.addEventListener("task", (event) => {
    onTask(JSON.parse((event as MessageEvent<string>).data) as TaskSnapshot);
  });
  signal.addEventListener("abort", () => source.close(), { once: true });
}

/** How many people take part in a task right now (connected clients and peers). */
export function participantsOf(snapshot: TaskSnapshot): number {
  return snapshot.connected.federated + snapshot.connected.decentralized;
}
