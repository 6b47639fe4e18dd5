// Federated training of a tabular task with the real client: discojs.Disco, federated scheme,
// data read from CSV files by discojs-node's NodeTabularLoader (DatasetBuilder, as the CLI does).
// The federated client is instrumented (its own methods wrapped, behaviour unchanged) to record
// every weight update it posts and every round/weights answer it gets from the server.
//
// usage: node train_federated.mjs <baseURL> <taskID> <options JSON>
//   options: {csv: [paths], epochs, roundDuration, batchSize, learningRate?,
//             barrier?: {dir, name, count, timeoutMs}, timeoutMs?}  (barrier: start training
//             together; timeoutMs: the whole run's bound, default 120000)
// stdout: {ok, error?, clientID, posts: [{round, weights}], pulls: [{clientRound, serverRound,
//          adopted, weights?}], statistics: [...], closes: [{code, reason}], final: {round, weights},
//          trainAccuracy: [...]}
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { discojs, main, baseURL, modelDigest, weightsDigest } from './common.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait (bounded) until `count` participants have written their marker file into `dir`. */
async function barrier({ dir, name, count, timeoutMs = 30000 }) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.ready`), '');
  const deadline = Date.now() + timeoutMs;
  while (readdirSync(dir).filter((f) => f.endsWith('.ready')).length < count) {
    if (Date.now() > deadline) throw new Error(`barrier: fewer than ${count} participants in time`);
    await sleep(50);
  }
}

/** Wrap the client's protocol steps to record what goes over the wire, results untouched. */
function instrument(client, record, options) {
  const { connect, postWeightsToServer, pullRoundAndFetchWeights, pullServerStatistics } = client;
  client.connect = async function () {
    await connect.call(this);
    this.server.socket.addEventListener('close', (event) => {
      record.closes.push({ code: event.code, reason: event.reason });
    });
    if (options.barrier !== undefined) await barrier(options.barrier);
  };
  client.postWeightsToServer = async function (weights) {
    record.posts.push({ round: this.round, weights: weightsDigest(weights.weights) });
    return postWeightsToServer.call(this, weights);
  };
  client.pullRoundAndFetchWeights = async function () {
    const clientRound = this.round;
    const weights = await pullRoundAndFetchWeights.call(this);
    record.pulls.push({
      clientRound,
      serverRound: this.serverRound,
      adopted: weights !== undefined,
      weights: weights === undefined ? undefined : weightsDigest(weights.weights),
    });
    return weights;
  };
  client.pullServerStatistics = async function (informant) {
    await pullServerStatistics.call(this, informant);
    record.statistics.push(this.receivedStatistics);
  };
}

// options.timeoutMs (default 120 s) bounds the whole run (bench/legacy_js.py trains big models).
const overallTimeoutMs = (() => {
  try {
    return JSON.parse(process.argv[4] ?? '{}').timeoutMs ?? 120000;
  } catch {
    return 120000;
  }
})();

await main('train_federated', overallTimeoutMs, async ([base, taskID, rawOptions]) => {
  const options = JSON.parse(rawOptions);
  const url = baseURL(base);
  const tasks = await discojs.fetchTasks(url);
  const served = tasks.get(taskID);
  if (served === undefined) throw new Error(`task ${taskID} not in GET /tasks`);
  // Same task, shorter training: only the client-side schedule changes.
  const task = {
    ...served,
    trainingInformation: {
      ...served.trainingInformation,
      epochs: options.epochs,
      roundDuration: options.roundDuration,
      batchSize: options.batchSize,
      ...(options.learningRate === undefined ? {} : { learningRate: options.learningRate }),
    },
  };
  for (const path of options.csv) {
    if (!existsSync(path)) throw new Error(`no such CSV: ${path}`);
  }
  const builder = new discojs.data.DatasetBuilder(new discojs.node.data.NodeTabularLoader(task, ','), task);
  builder.addFiles(options.csv);
  const data = await builder.build();

  const record = { posts: [], pulls: [], statistics: [], closes: [] };
  const client = new discojs.client.federated.Client(url, task);
  instrument(client, record, options);
  const logger = { success: (m) => console.error(m), error: (m) => console.error(m) };
  const disco = new discojs.Disco(task, {
    url, client, logger, scheme: discojs.TrainingSchemes.FEDERATED,
  });

  let error;
  try {
    await disco.fit(data);
  } catch (err) {
    error = String(err?.stack ?? err);
    console.error('train_federated: training failed:', err);
  }
  const trainer = await disco.trainer;
  const log = await disco.logs();
  return {
    ok: error === undefined,
    error,
    clientID: client.clientID,
    ...record,
    final: { round: client.round, weights: modelDigest(trainer.model) },
    trainAccuracy: log.trainAccuracy.toArray(),
  };
});
