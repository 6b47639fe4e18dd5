// One real DISCO 2.1.1 decentralized peer running aggregation rounds through a signaling server:
// each round it hands the given weights to the client's per-round entry point,
// `onRoundEndCommunication`, and records what the client returns.
//
// usage: node decentralized_aggregate.mjs <request.json>
//   request: {url, taskID, timeoutMs?, barrier?: {dir, parties},
//             rounds: [[{shape, data (base64 f32 LE)}, ...], ...]}
//   The client class follows the task as served: SecAgg if decentralizedSecure, else ClearText.
//
// barrier: after its last round the peer waits for every peer of the test to finish theirs
// before it disconnects (leaveTogether in decentralized_common.mjs says why).
// stdout: {id, clientClass, rounds: [[{shape, data}]], aggregated: [bool per round],
//          participants: [n per round], loopback, races}
// Exit codes (common.mjs): 0 done, 1 error, 2 overall timeout.
import { baseURL, discojs, main, tf } from './common.mjs';
import {
  base64FromF32, clientClass, f32FromBase64, fetchTask, leaveTogether, loopback, races,
  readRequest,
} from './decentralized_common.mjs';

const [requestFile] = process.argv.slice(2);
const request = await readRequest(requestFile);

await main('decentralized_aggregate', request.timeoutMs ?? 60000, async () => {
  const url = baseURL(request.url);
  const task = await fetchTask(discojs, url, request.taskID);
  const Client = clientClass(discojs, task);
  const client = new Client(url, task);
  const informant = new discojs.informant.DecentralizedInformant(task);
  await client.connect();

  const rounds = [];
  const participants = [];
  const aggregatedRounds = [];
  for (const [index, tensors] of request.rounds.entries()) {
    const weights = new discojs.WeightsContainer(
      tensors.map(({ shape, data }) => tf.tensor(f32FromBase64(data), shape, 'float32')),
    );
    // The trainer passes the model's weights after and before local training; without
    // noiseScale/clippingRadius the client shares the first argument unchanged. On any failure
    // the 2.1.1 client only logs a warning and returns its own weights: the caller must compare
    // with the expected mean, not just check that an answer came.
    const aggregated = await client.onRoundEndCommunication(weights, weights, index + 1, informant);
    rounds.push(await Promise.all(aggregated.weights.map(async (t) => ({
      shape: t.shape,
      data: base64FromF32(await t.data()),
    }))));
    participants.push(informant.participants());
    aggregatedRounds.push(aggregated !== weights); // false: the client gave up on the round
  }
  await leaveTogether(request.barrier);
  const id = client.ID;
  await client.disconnect();
  return {
    id,
    clientClass: Client.name,
    rounds,
    aggregated: aggregatedRounds,
    participants,
    loopback: loopback.report(),
    races,
  };
});
