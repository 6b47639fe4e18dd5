/**
 * A training run: local steps interleaved with communication rounds (as the Python client's
 * `disco.client.session.run_training`). A round lasts `roundDuration` batches; its update goes
 * through DISCO's client-side privacy before it is shared.
 */

import type * as tf from "@tensorflow/tfjs";

import { currentBackend, initBackend } from "./backend.js";
import { LocalCommunicator } from "./communicator.js";
import type { Communicator } from "./communicator.js";
import { DataError, DiscoError } from "./errors.js";
import { Emitter } from "./events.js";
import { FederatedCommunicator } from "./federated.js";
import { clientPlan, epsilon, plannedRounds } from "./accountant.js";
import { privatize } from "./privacy.js";
import { SecureFederatedCommunicator } from "./secagg/communicator.js";
import { Random } from "./random.js";
import { loadModel, notTrainableReason } from "./server.js";
import { LocalTrainer } from "./training.js";
import type { Batch } from "./training.js";
import type {
  Dataset,
  RoundRecord,
  Scheme,
  TrainOptions,
  TrainingEvents,
  TrainingResult,
  TrainingRun,
} from "./types.js";
import { modelWeights, setModelWeights } from "./weights.js";

const DEFAULT_ROUND_TIMEOUT_MS = 120_000;

/** The run was stopped (by `stop()`): not an error for the person. */
class Stopped extends DiscoError {}

function randomID(): string {
  return typeof crypto.randomUUID === "function"
    ? crypto.randomUUID()
    : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Give the page a chance to paint and handle input between batches. */
function yieldToPage(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Group batches into rounds of `roundDuration` (a last partial round is kept). */
function* roundsOf(trainer: LocalTrainer, batches: Iterator<Batch>, rounds?: number): Generator<Batch[]> {
  let produced = 0;
  let group: Batch[] = [];
  for (let next = batches.next(); !next.done; next = batches.next()) {
    group.push(next.value);
    if (group.length === trainer.roundDuration) {
      yield group;
      produced++;
      group = [];
      if (rounds !== undefined && produced >= rounds) return;
    }
  }
  if (group.length > 0) yield group;
}

function checkData(options: TrainOptions): void {
  const { data, task } = options;
  if (data.y === null) throw new DataError("training needs labelled data (the outputs are missing)");
  if (data.size === 0) throw new DataError("there is no data to train on");
  const refusal = notTrainableReason(task);
  if (refusal !== null) throw new DiscoError(refusal);
  const info = task.trainingInformation;
  if (data.kind === "tabular" && data.sampleShape[0] !== (info.inputColumns ?? []).length) {
    throw new DataError("the data was not read for this task's input columns");
  }
}

/**
 * Switch from wasm to the cpu backend when the model needs a gradient kernel that TF.js' wasm
 * backend does not have (slower, but it trains); nothing has been sent yet at this point.
 */
async function ensureTrainable(trainer: LocalTrainer, data: Dataset): Promise<void> {
  if (currentBackend() !== "wasm") return;
  try {
    trainer.probe(data);
  } catch (error) {
    if (!/not registered for backend/.test(String(error))) throw error;
    console.info(`the wasm backend cannot train this model (${String(error)}): using cpu`);
    await initBackend("cpu");
  }
}

/** Start training; see `TrainingRun` and docs/web-engine.md. */
export function train(options: TrainOptions): TrainingRun {
  const emitter = new Emitter<TrainingEvents>();
  let stopRequested = false;
  let communicator: Communicator | null = null;
  let resolveModel: (model: tf.LayersModel) => void = () => undefined;
  let rejectModel: (error: unknown) => void = () => undefined;
  const model = new Promise<tf.LayersModel>((resolve, reject) => {
    resolveModel = resolve;
    rejectModel = reject;
  });
  model.catch(() => undefined); // a failed run reports through `done`

  async function run(): Promise<TrainingResult> {
    checkData(options); // before anything is loaded or sent
    const { task, data, server } = options;
    const info = task.trainingInformation;
    const scheme = (options.scheme ?? info.scheme ?? "federated") as Scheme;
    await initBackend();
    const net = options.model ?? (await loadModel(server, task.taskID));
    resolveModel(net);
    const trainer = new LocalTrainer(net, info, options.seed);
    await ensureTrainable(trainer, data);
    const random = new Random(options.seed === undefined ? undefined : options.seed + 1);
    const timeout = options.roundTimeoutMs ?? DEFAULT_ROUND_TIMEOUT_MS;
    const report = (event: TrainingEvents["waiting"]): void => emitter.emit("waiting", event);

    let round = 0;
    if (scheme === "federated") {
      // aggregationStrategy "secure": the server only ever sees the sum of the masked updates
      const clientID = options.clientID ?? randomID();
      const connected = info.aggregationStrategy === "secure"
        ? await SecureFederatedCommunicator.connect(server, task.taskID, clientID, timeout, report)
        : await FederatedCommunicator.connect(server, task.taskID, clientID, timeout, report);
      communicator = connected.communicator;
      round = connected.round;
      setModelWeights(net, connected.weights);
    } else if (scheme === "decentralized") {
      const { DecentralizedCommunicator } = await import("./decentralized/communicator.js");
      communicator = await DecentralizedCommunicator.connect({
        server,
        task,
        secure: options.secure ?? info.decentralizedSecure === true,
        roundTimeoutMs: timeout,
        iceServers: options.iceServers ?? [],
        report,
      });
    } else if (scheme === "local") {
      communicator = new LocalCommunicator();
    } else {
      throw new DiscoError(`unknown scheme '${String(scheme)}' (federated, decentralized or local)`);
    }
    if (stopRequested) throw new Stopped();

    const epochs = options.rounds !== undefined ? 1e9 : (options.epochs ?? trainer.epochs);
    const batchesPerEpoch = trainer.batchesPerEpoch(data);
    // Client-side DP and its account, as the Python client keeps them (accountant.ts).
    const plan = clientPlan(info, plannedRounds(
      data.size, trainer.batchSize, options.epochs ?? trainer.epochs, trainer.roundDuration, options.rounds,
    ));
    const z = plan.noiseMultiplier;
    let released = 0;
    let warned = false;
    let stoppedBecause: string | undefined;
    const records: RoundRecord[] = [];
    let previous = modelWeights(net);
    let trainedSamples = 0;
    let trainingMs = 0;
    let lastEpoch = -1;
    for (const group of roundsOf(trainer, trainer.batches(data, epochs), options.rounds)) {
      const spentAfter = z === undefined ? undefined : epsilon(z, released + 1, plan.delta);
      if (spentAfter !== undefined && plan.budget !== undefined && spentAfter > plan.budget) {
        const reason = `privacy budget: another round would bring ε to ${spentAfter.toPrecision(3)} > ` +
          `${plan.budget} (δ = ${plan.delta})`;
        if (plan.onExhausted === "stop") {
          console.warn(`stopping: ${reason}`);
          stoppedBecause = reason;
          break;
        }
        if (!warned) console.warn(`continuing past the ${reason}`);
        warned = true;
      }
      const started = performance.now();
      const losses: number[] = [];
      const accuracies: number[] = [];
      for (const batch of group) {
        if (stopRequested) throw new Stopped();
        if (batch.epoch !== lastEpoch) {
          lastEpoch = batch.epoch;
          emitter.emit("epoch", { epoch: batch.epoch, epochs: options.rounds !== undefined ? 0 : epochs });
        }
        const stepStarted = performance.now();
        const metrics = trainer.step(data, batch.indices);
        trainingMs += performance.now() - stepStarted;
        trainedSamples += metrics.samples;
        losses.push(metrics.loss);
        accuracies.push(metrics.accuracy);
        emitter.emit("batch", {
          epoch: batch.epoch, batch: batch.index, batchesPerEpoch,
          loss: metrics.loss, accuracy: metrics.accuracy,
        });
        await yieldToPage();
      }
      const update = privatize(modelWeights(net), previous, plan.clippingRadius, plan.noiseStd, random);
      const samples = group.reduce((n, b) => n + b.indices.length, 0);
      const result = await communicator.exchange(update, round, samples, spentAfter);
      if (z !== undefined) released++; // the update left this participant, aggregated or not
      if (stopRequested) throw new Stopped();
      if (result.weights !== null) setModelWeights(net, result.weights);
      previous = modelWeights(net);
      const record: RoundRecord = {
        round,
        epoch: group[group.length - 1]?.epoch ?? 0,
        batches: group.length,
        loss: losses.reduce((a, b) => a + b, 0) / losses.length,
        accuracy: accuracies.reduce((a, b) => a + b, 0) / accuracies.length,
        participants: result.participants,
        aggregated: result.weights !== null,
        seconds: (performance.now() - started) / 1000,
        nextRound: result.round,
      };
      if (z !== undefined) record.epsilon = epsilon(z, released, plan.delta);
      records.push(record);
      emitter.emit("round", record);
      round = result.round;
    }
    return finish(records, stoppedBecause !== undefined, trainedSamples, trainingMs);

    function finish(rounds: RoundRecord[], stopped: boolean, n: number, ms: number): TrainingResult {
      const result: TrainingResult = {
        taskID: task.taskID, scheme, rounds, stopped,
        samplesPerSecond: ms > 0 ? (1000 * n) / ms : 0,
      };
      if (stoppedBecause !== undefined) result.stoppedBecause = stoppedBecause;
      if (z !== undefined) {
        result.delta = plan.delta;
        if (plan.budget !== undefined) result.budget = plan.budget;
      }
      return result;
    }
  }

  const records: RoundRecord[] = [];
  emitter.on("round", (record) => records.push(record));
  const done = run()
    .catch((error: unknown): TrainingResult => {
      if (error instanceof Stopped || stopRequested) {
        return {
          taskID: options.task.taskID,
          scheme: (options.scheme ?? options.task.trainingInformation.scheme) as Scheme,
          rounds: records, stopped: true, samplesPerSecond: 0,
        };
      }
      rejectModel(error);
      emitter.emit("error", { message: error instanceof Error ? error.message : String(error) });
      throw error;
    })
    .then((result) => {
      emitter.emit("done", result);
      return result;
    })
    .finally(() => communicator?.close());

  return {
    on: (type, listener) => emitter.on(type, listener),
    stop: () => {
      stopRequested = true;
      void communicator?.close();
    },
    done,
    model,
    connections: async () =>
      communicator !== null && "connections" in communicator
        ? (communicator as { connections(): Promise<Awaited<ReturnType<TrainingRun["connections"]>>> }).connections()
        : [],
  };
}
