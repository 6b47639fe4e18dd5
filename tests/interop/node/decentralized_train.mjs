// Decentralized training of a tabular task by one real DISCO 2.1.1 peer: discojs.Disco with the
// decentralized scheme, data read from CSV files by discojs-node's NodeTabularLoader.
//
// The client is passed to Disco explicitly: 2.1.1's Disco constructor builds a *federated* client
// for the decentralized scheme when it has to make one itself. Its class follows the task as
// served (SecAgg if decentralizedSecure, else ClearText). Its per-round entry point,
// onRoundEndCommunication, is wrapped (behaviour unchanged) to record what it shares and returns.
//
// usage: node decentralized_train.mjs <request.json>
//   request: {url, taskID, csv: [paths], timeoutMs?, epochs?, roundDuration?, batchSize?,
//             barrier?: {dir, parties}}
//            (epochs/roundDuration/batchSize override the served task's schedule, client side;
//            barrier: leave together, see leaveTogether in decentralized_common.mjs)
// stdout: {id, clientClass, rounds: [{round, aggregated, participants, sent, received}],
//          final: [{shape, data}], finite, trainAccuracy, loopback, races}
//   sent / received / final: [{shape, data (base64 f32 LE)}]; `aggregated` is false when the client
//   gave up on the round (2.1.1 then logs a warning and keeps its own weights).
import { existsSync } from 'node:fs';
import { baseURL, discojs, main } from './common.mjs';
import {
  base64FromF32, clientClass, fetchTask, leaveTogether, loopback, races, readRequest,
} from './decentralized_common.mjs';

const [requestFile] = process.argv.slice(2);
const request = await readRequest(requestFile);

/** [{shape, data}] of a WeightsContainer, for the result line. */
async function encode(container) {
  return Promise.all(container.weights.map(async (t) => ({
    shape: t.shape,
    data: base64FromF32(await t.data()),
  })));
}

await main('decentralized_train', request.timeoutMs ?? 60000, async () => {
  const url = baseURL(request.url);
  const served = await fetchTask(discojs, url, request.taskID);
  const schedule = Object.fromEntries(
    ['epochs', 'roundDuration', 'batchSize']
      .filter((key) => request[key] !== undefined)
      .map((key) => [key, request[key]]),
  );
  const task = { ...served, trainingInformation: { ...served.trainingInformation, ...schedule } };
  for (const path of request.csv) {
    if (!existsSync(path)) throw new Error(`no such CSV: ${path}`);
  }
  const loader = new discojs.node.data.NodeTabularLoader(task, ',');
  const builder = new discojs.data.DatasetBuilder(loader, task);
  builder.addFiles(request.csv);
  const data = await builder.build();

  const Client = clientClass(discojs, task);
  const client = new Client(url, task);
  const informant = new discojs.informant.DecentralizedInformant(task);
  const rounds = [];
  const onRoundEnd = client.onRoundEndCommunication;
  client.onRoundEndCommunication = async function (updated, stale, round, trainingInformant) {
    const sent = await encode(updated);
    const result = await onRoundEnd.call(this, updated, stale, round, trainingInformant);
    rounds.push({
      round,
      aggregated: result !== updated,
      participants: trainingInformant.participants(),
      sent,
      received: await encode(result),
    });
    return result;
  };

  const logger = { success: (m) => console.error(m), error: (m) => console.error(m) };
  const disco = new discojs.Disco(task, {
    url, client, informant, logger, scheme: discojs.TrainingSchemes.DECENTRALIZED,
  });
  await disco.fit(data);
  const trainer = await disco.trainer;
  const final = await encode(discojs.WeightsContainer.from(trainer.model));
  const finite = trainer.model.getWeights().every((t) => t.dataSync().every(Number.isFinite));
  const log = await disco.logs();
  const id = client.ID;
  await leaveTogether(request.barrier);
  await disco.close();
  return {
    id,
    clientClass: Client.name,
    rounds,
    final,
    finite,
    trainAccuracy: log.trainAccuracy.toArray(),
    loopback: loopback.report(),
    races,
  };
});
