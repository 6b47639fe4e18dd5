// Load a served model two ways and digest its weights:
//  - `client`: the real client's getLatestModel() (GET /tasks/<id>/model.json, DISCO msgpack encoding);
//  - `tfjs`: plain tf.loadLayersModel(<tfjsURL>) (TF.js layers model.json + weight files over HTTP).
// usage: node inspect_model.mjs <baseURL> <taskID> [tfjsModelURL...]
// stdout: {client: {inputShape, outputShape, predictionFinite, weights}, tfjs: [{...} per URL]};
//         weights as common.weightsDigest.
import { discojs, tf, main, baseURL, modelDigest } from './common.mjs';

function describe(model) {
  // One forward pass proves the rebuilt graph runs, not just that the bytes decoded.
  const inputShape = model.inputs[0].shape.map((d) => d ?? 1);
  const output = tf.tidy(() => model.predict(tf.zeros(inputShape)));
  const result = {
    inputShape: model.inputs[0].shape,
    outputShape: model.outputs[0].shape,
    predictionFinite: output.dataSync().every((v) => Number.isFinite(v)),
    weights: modelDigest(model),
  };
  output.dispose();
  return result;
}

await main('inspect_model', 60000, async ([base, taskID, ...tfjsURLs]) => {
  // getLatestModel() only reads task.taskID.
  const client = new discojs.client.federated.Client(baseURL(base), { taskID });
  const result = { client: describe(await client.getLatestModel()), tfjs: [] };
  for (const url of tfjsURLs) {
    result.tfjs.push(describe(await tf.loadLayersModel(url)));
  }
  return result;
});
