/**
 * Public types of the DISCO browser engine (`<server>/app/disco.js`).
 *
 * These are the contract between the engine and every page that uses it (this server's web
 * app, the browser tests, other people's pages): documented in docs/web-engine.md.
 */

import type { LayersModel } from "@tensorflow/tfjs";

// ------------------------------------------------------------------------------ tasks

/** How a task trains: through the server (federated) or among peers (decentralized). */
export type Scheme = "federated" | "decentralized" | "local";

/** `displayInformation` of a DISCO task (only the fields the engine and pages read). */
export interface DisplayInformation {
  taskTitle: string;
  summary?: { preview: string; overview: string };
  dataFormatInformation?: string;
  dataExampleText?: string;
  dataExample?: { columnName: string; columnData: string | number }[];
  headers?: string[];
  dataExampleImage?: string;
  model?: string;
  tradeoffs?: string;
  limitations?: string;
  [key: string]: unknown;
}

/** `trainingInformation` of a DISCO task: hyper-parameters and the shape of the data. */
export interface TrainingInformation {
  modelID: string;
  epochs: number;
  /** Batches per communication round (as DISCO 2.1.1 and the Python client count it). */
  roundDuration: number;
  validationSplit: number;
  batchSize: number;
  modelCompileData: { optimizer: string; loss: string; metrics: string[] };
  /** "tabular" or "image" for the tasks the engine trains. */
  dataType: string;
  /** A `Scheme` for the tasks the engine trains. */
  scheme: string;
  inputColumns?: string[];
  outputColumns?: string[];
  IMAGE_H?: number;
  IMAGE_W?: number;
  LABEL_LIST?: string[];
  /** DISCO's preprocessing names; images: "normalize" (pixels to [0, 1]) and "resize". */
  preprocessingFunctions?: string[];
  learningRate?: number;
  /** Client-side differential privacy: Gaussian noise of std noiseScale·clippingRadius. */
  noiseScale?: number;
  /** Client-side differential privacy: the round's update is clipped to this L2 norm. */
  clippingRadius?: number;
  decentralizedSecure?: boolean;
  /** `privacy`: newer DISCO's ε/δ target (`differentialPrivacy`), the account's δ and budget. */
  privacy?: {
    differentialPrivacy?: { clippingRadius?: number; epsilon?: number; delta?: number; rounds?: number };
    delta?: number;
    budget?: { epsilon?: number; onExhausted?: "stop" | "warn" };
    [key: string]: unknown;
  };
  /** "secure" with the federated scheme: the server only ever sees the sum of the updates
   * (secure aggregation, see docs/web-engine.md); "mean" (default) or "byzantine" otherwise. */
  aggregationStrategy?: string;
  /** Secure rounds: the fraction of a neighbourhood whose shares rebuild a seed, the graph degree. */
  secureAggregation?: { threshold?: number; degree?: number };
  maxShareValue?: number;
  minimumReadyPeers?: number;
  minNbOfParticipants?: number;
  [key: string]: unknown;
}

/** A DISCO task as `GET /tasks` returns it. */
export interface Task {
  taskID: string;
  displayInformation: DisplayInformation;
  trainingInformation: TrainingInformation;
  /** Set on PyTorch-only tasks: only the Python client can build their model (see `notTrainableReason`). */
  torchModel?: { factory: string; reason: string };
  [key: string]: unknown;
}

/** `GET /tasks/{id}/status`: the global model's round and the live participant counts. */
export interface TaskStatus {
  taskID: string;
  scheme: string;
  round: number;
  modelVersion: number;
  currentNumberOfParticipants: number;
  totalNumberOfParticipants: number;
  averageNumberOfParticipants: number;
  connectedPeers: number;
  readyPeers: number;
  live: boolean;
}

// ------------------------------------------------------------------------------ data

/** What to do with empty CSV cells: refuse the file, drop the rows, or fill in the column mean. */
export type MissingPolicy = "error" | "drop" | "mean";

/** One problem found in local data, tied to a file and line when it has one. */
export interface DataIssue {
  file: string;
  /** 1-based line of a CSV file (the header is line 1), when the issue is about a line. */
  line?: number;
  column?: string;
  /** A sentence a person understands, e.g. "titanic.csv, line 7: 11 cells for 12 columns". */
  message: string;
}

/**
 * Local data ready for training, evaluation or prediction; it never leaves the page.
 *
 * `x` holds `size` samples of `sampleShape` (row-major, float32). For tabular tasks `y` holds
 * the output columns (`size` × outputColumns.length); for image tasks it holds class indices
 * into the task's LABEL_LIST (`numClasses` set). `y` is null for unlabelled data (prediction).
 */
export interface Dataset {
  readonly kind: "tabular" | "image";
  readonly size: number;
  readonly sampleShape: readonly number[];
  readonly x: Float32Array;
  readonly y: Float32Array | null;
  readonly numClasses?: number;
  /** Where each sample comes from: its file line (tabular) or file path (images). */
  readonly sources: readonly string[];
  /** Rows dropped or cells filled (missing: "drop" | "mean"), to show the person what happened. */
  readonly notes: readonly string[];
}

/** Options of `readTabular`. */
export interface TabularOptions {
  missing?: MissingPolicy;
  /** false for prediction: the output columns are not required (default true). */
  labelled?: boolean;
}

/** One image file: the file and the path it was picked under (`label/name.png` for folders). */
export interface ImageInput {
  file: Blob;
  /** `webkitRelativePath` or the file's name; the parent folder names the label. */
  path: string;
}

/** Options of `readImages`. */
export interface ImageOptions {
  /** A CSV of `file,label` rows (header optional) instead of one folder per label. */
  labelsCsv?: Blob & { name?: string };
  /** Resize images of another size to IMAGE_H×IMAGE_W (bilinear); by default they are refused. */
  resize?: boolean;
  /** The model's input channels: 1 (grey levels) or 3 (RGB, the default); see `inputChannels`. */
  channels?: number;
  /** false for prediction: images need no label (default true). */
  labelled?: boolean;
}

// ------------------------------------------------------------------------------ training

/** What a participant waits for between rounds (shown to the person). */
export type WaitingReason =
  | "connecting" // opening the connection to the server (or the peers)
  | "participants" // fewer contributions than the quorum: more people must join
  | "contributions" // quorum reached: the other participants of the round may still contribute
  | "aggregation" // the server (or the peers) aggregate the round
  | "peers"; // decentralized: waiting for enough ready peers

/** Options of `train`. */
export interface TrainOptions {
  /** The server's base URL, e.g. `location.origin` or "http://127.0.0.1:8080". */
  server: string;
  task: Task;
  data: Dataset;
  /** The model to train (e.g. from `loadModel`); by default the task's current global model. */
  model?: LayersModel;
  /** Default: the task's scheme. "local" trains without sharing anything. */
  scheme?: Scheme;
  /** Decentralized only: DISCO's secure aggregation (default: the task's decentralizedSecure). */
  secure?: boolean;
  /** Passes over the local data (default: the task's epochs); ignored when `rounds` is set. */
  epochs?: number;
  /** Stop after this many communication rounds instead of after `epochs`. */
  rounds?: number;
  /** This participant's id on the federated channel (default: a random UUID). */
  clientID?: string;
  /** How long to wait for a round's aggregate before going on with the local model (120 s). */
  roundTimeoutMs?: number;
  /** Decentralized: ICE servers for RTCPeerConnection (default none: same-network peers). */
  iceServers?: RTCIceServer[];
  /** Seed of the batch order and of the privacy noise (default: random). */
  seed?: number;
}

/** One completed communication round (the same record as the Python client's history). */
export interface RoundRecord {
  round: number;
  epoch: number;
  batches: number;
  loss: number;
  accuracy: number;
  participants: number;
  /** Whether an aggregate came back (false: kept the local model after the timeout). */
  aggregated: boolean;
  seconds: number;
  /** The round contributed to next: federated, the round of the global model just adopted. */
  nextRound: number;
  /** Client-side DP: ε spent after this round at the task's δ (absent without DP). */
  epsilon?: number;
}

/** Events of a training run, by name: `run.on("round", (r) => ...)`. */
export interface TrainingEvents {
  epoch: { epoch: number; epochs: number };
  batch: {
    epoch: number;
    batch: number;
    batchesPerEpoch: number;
    loss: number;
    accuracy: number;
  };
  round: RoundRecord;
  waiting: {
    reason: WaitingReason;
    round: number;
    participants?: number;
    contributions?: number;
    minParticipants?: number;
    deadlineMs?: number;
  };
  done: TrainingResult;
  error: { message: string };
}

/** What `run.done` resolves to. */
export interface TrainingResult {
  taskID: string;
  scheme: Scheme;
  rounds: RoundRecord[];
  /** true when `stop()` or the privacy budget ended the run early. */
  stopped: boolean;
  /** Why the run stopped before its end when the privacy budget ended it. */
  stoppedBecause?: string;
  /** Client-side DP: the account's δ and budget (absent without DP). */
  delta?: number;
  budget?: number;
  /** Samples per second of local training (batches only, communication excluded). */
  samplesPerSecond: number;
}

/** A running training: listen to its events, stop it, await its end. */
export interface TrainingRun {
  on<K extends keyof TrainingEvents>(
    type: K,
    listener: (event: TrainingEvents[K]) => void,
  ): () => void;
  /** Leave the task: close the connections; `done` resolves with `stopped: true`. */
  stop(): void;
  readonly done: Promise<TrainingResult>;
  /** The model being trained (holds the latest weights). */
  readonly model: Promise<LayersModel>;
  /** Decentralized: each peer connection's selected ICE candidate pair (empty otherwise). */
  connections(): Promise<{ peer: number; open: boolean; local: string; remote: string; protocol: string }[]>;
}

// ------------------------------------------------------------------------------ evaluation

/** `evaluate`'s figures on labelled local data. */
export interface Evaluation {
  samples: number;
  loss: number;
  accuracy: number;
  /** confusion[true][predicted] counts; labels name the classes (LABEL_LIST, or "0"/"1"). */
  confusion: number[][];
  labels: string[];
}

/** `predict`'s answer for one sample. */
export interface Prediction {
  source: string;
  /** The model's outputs for the sample (probabilities for sigmoid/softmax heads). */
  outputs: number[];
  /** Class index (argmax, or output >= 0.5 for one sigmoid unit). */
  predicted: number;
  /** LABEL_LIST[predicted] for image tasks, else the class index as text. */
  label: string;
}
