/**
 * Training runs of this page, kept while the person moves between pages (the run goes on when
 * they look at the task or the dashboard, and the train page shows it again when they return).
 * One run per task at a time; the trained model stays available to the Test page.
 */

import { train } from "../../engine/index.js";
import type {
  Dataset,
  RoundRecord,
  Task,
  TrainingEvents,
  TrainingResult,
  TrainingRun,
  tf,
} from "../../engine/index.js";

export type SessionStatus = "starting" | "training" | "waiting" | "done" | "stopped" | "failed";

export interface SessionState {
  status: SessionStatus;
  epoch: number;
  epochs: number;
  batch: number;
  batchesPerEpoch: number;
  totalRounds: number;
  rounds: RoundRecord[];
  waiting: TrainingEvents["waiting"] | null;
  participants: number;
  batchLoss: number;
  batchAccuracy: number;
  error: string | null;
  result: TrainingResult | null;
  dataSize: number;
}

export class Session {
  readonly state: SessionState;
  readonly run: TrainingRun;
  private readonly listeners = new Set<() => void>();
  private scheduled = false;

  constructor(
    readonly task: Task,
    data: Dataset,
  ) {
    const info = task.trainingInformation;
    const batchesPerEpoch = Math.max(1, Math.ceil(data.size / Math.max(1, info.batchSize)));
    const epochs = Math.max(1, Math.floor(info.epochs));
    this.state = {
      status: "starting",
      epoch: 0,
      epochs,
      batch: 0,
      batchesPerEpoch,
      totalRounds: Math.ceil((batchesPerEpoch * epochs) / Math.max(1, Math.floor(info.roundDuration))),
      rounds: [],
      waiting: { reason: "connecting", round: 0 },
      participants: 0,
      batchLoss: NaN,
      batchAccuracy: NaN,
      error: null,
      result: null,
      dataSize: data.size,
    };
    this.run = train({ server: location.origin, task, data });
    const s = this.state;
    this.run.on("epoch", ({ epoch, epochs: total }) => {
      s.epoch = epoch;
      if (total > 0) s.epochs = total;
      this.changed();
    });
    this.run.on("batch", ({ epoch, batch, batchesPerEpoch: perEpoch, loss, accuracy }) => {
      Object.assign(s, { epoch, batch: batch + 1, batchesPerEpoch: perEpoch, batchLoss: loss, batchAccuracy: accuracy });
      s.status = "training";
      s.waiting = null;
      this.changed();
    });
    this.run.on("waiting", (waiting) => {
      s.status = "waiting";
      s.waiting = waiting;
      if (waiting.participants !== undefined) s.participants = waiting.participants;
      this.changed();
    });
    this.run.on("round", (record) => {
      s.rounds.push(record);
      s.participants = record.participants;
      s.waiting = null;
      s.status = "training";
      this.changed();
    });
    this.run.done.then(
      (result) => {
        s.result = result;
        s.status = result.stopped ? "stopped" : "done";
        s.waiting = null;
        this.changed(true);
      },
      (error: unknown) => {
        s.error = error instanceof Error ? error.message : String(error);
        s.status = "failed";
        s.waiting = null;
        this.changed(true);
      },
    );
  }

  get running(): boolean {
    return this.state.status === "starting" || this.state.status === "training" || this.state.status === "waiting";
  }

  get model(): Promise<tf.LayersModel> {
    return this.run.model;
  }

  /** Call `listener` (at most once per frame) whenever the state changes; returns an unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(now = false): void {
    if (now) {
      for (const listener of this.listeners) listener();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener();
    });
  }
}

const sessions = new Map<string, Session>();

export function sessionOf(taskID: string): Session | undefined {
  return sessions.get(taskID);
}

/** Start a run for `task` on `data` (replacing a finished one). */
export function startSession(task: Task, data: Dataset): Session {
  const session = new Session(task, data);
  sessions.set(task.taskID, session);
  return session;
}

/** The model trained (or being trained) on this page for `taskID`, if any. */
export function trainedModel(taskID: string): Session | undefined {
  const session = sessions.get(taskID);
  return session !== undefined && session.state.rounds.length > 0 ? session : undefined;
}

window.addEventListener("beforeunload", (event) => {
  if ([...sessions.values()].some((session) => session.running)) event.preventDefault();
});
