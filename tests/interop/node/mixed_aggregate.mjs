// decentralized_aggregate.mjs for mixed rounds (JS and Python peers): the same real DISCO 2.1.1
// peer running aggregation rounds through `onRoundEndCommunication`, plus a linger before it
// disconnects.
//
// Why the linger: the 2.1.1 client does not wait for its own sends. ClearText sends its weights
// from a `.then` it never awaits and SecAgg sends its partial sums with `void`; when everyone
// else's message is already there, `onRoundEndCommunication` returns first, and a client that
// disconnects right after its last round destroys the connection before its message left
// (simple-peer silently drops sends once destroying). A fast peer (the Python one answers as
// soon as it is connected) makes that likely. Waiting before `disconnect()` changes only when
// the client leaves, never what it sends.
//
// usage: node mixed_aggregate.mjs <request.json>
//   request: {url, taskID, timeoutMs?, lingerMs? (default 1500), rounds: [[{shape, data}]]}
// stdout: {id, clientClass, rounds: [[{shape, data}]], participants, loopback, races}
import { baseURL, discojs, main, tf } from './common.mjs';
import {
  base64FromF32, clientClass, f32FromBase64, fetchTask, loopback, races, readRequest,
} from './decentralized_common.mjs';

const [requestFile] = process.argv.slice(2);
const request = await readRequest(requestFile);

await main('mixed_aggregate', request.timeoutMs ?? 60000, async () => {
  const url = baseURL(request.url);
  const task = await fetchTask(discojs, url, request.taskID);
  const Client = clientClass(discojs, task);
  const client = new Client(url, task);
  const informant = new discojs.informant.DecentralizedInformant(task);
  await client.connect();

  const rounds = [];
  const participants = [];
  for (const [index, tensors] of request.rounds.entries()) {
    const weights = new discojs.WeightsContainer(
      tensors.map(({ shape, data }) => tf.tensor(f32FromBase64(data), shape, 'float32')),
    );
    // On failure the client only warns and returns its own weights: callers compare with the mean.
    const aggregated = await client.onRoundEndCommunication(weights, weights, index + 1, informant);
    rounds.push(await Promise.all(aggregated.weights.map(async (t) => ({
      shape: t.shape,
      data: base64FromF32(await t.data()),
    }))));
    participants.push(informant.participants());
  }
  await new Promise((resolve) => { setTimeout(resolve, request.lingerMs ?? 1500); });
  const id = client.ID;
  await client.disconnect();
  return { id, clientClass: Client.name, rounds, participants, loopback: loopback.report(), races };
});
