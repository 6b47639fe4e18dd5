// Checks disco.tasks output with the real DISCO client (@epfml/discojs-node 2.1.1), tfjs 4.22.0
// and msgpack-lite. Run with NODE_PATH=<tests/interop/node/node_modules>.
// stdin: JSON request {op, ...}; stdout: last line = JSON answer.
//   {op: "isTask", tasks: [...]}                -> {results: [bool, ...]}
//   {op: "decode", file}                        -> the client's view of a model.json byte array
//   {op: "load_url", url}                       -> tf.loadLayersModel(url) of a TF.js layers model
//   {op: "encode", file}                        -> writes serialization.model.encode(model) to file
'use strict';

const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const msgpack = require('msgpack-lite');
const { isTask, serialization } = require('@epfml/discojs-node');

setTimeout(() => { console.error('disco_tasks.js: timeout'); process.exit(2); }, 60000).unref();

const b64 = (typed) => Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString('base64');

async function describe(model) {
  const weights = model.getWeights();
  const parts = [];
  for (const w of weights) parts.push(await w.data());
  const flat = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((offset, p) => { flat.set(p, offset); return offset + p.length; }, 0);
  const inputShape = model.inputs[0].shape.map((d) => (d === null ? 2 : d));
  const x = tf.ones(inputShape);
  const y = model.predict(x);
  const out = await y.data();
  return {
    topology: model.toJSON(null, false),
    weightNames: model.weights.map((w) => w.originalName),
    weightShapes: weights.map((w) => w.shape),
    weights: b64(flat),
    outputShape: y.shape,
    outputs: b64(new Float32Array(out)),
  };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  let answer;
  switch (request.op) {
    case 'isTask':
      answer = { results: request.tasks.map((t) => isTask(t)) };
      break;
    case 'decode': {
      const encoded = JSON.parse(fs.readFileSync(request.file, 'utf8'));
      const raw = msgpack.decode(encoded);
      const model = await serialization.model.decode(encoded);
      answer = {
        isEncoded: serialization.model.isEncoded(encoded),
        keys: Object.keys(raw),
        weightDataIsArrayBuffer: raw.weightData instanceof ArrayBuffer,
        weightSpecs: raw.weightSpecs,
        ...(await describe(model)),
      };
      break;
    }
    case 'load_url': {
      const model = await tf.loadLayersModel(request.url);
      answer = await describe(model);
      break;
    }
    case 'encode': {
      const model = tf.sequential();
      model.add(tf.layers.dense({ inputShape: [3], units: 4, activation: 'relu' }));
      model.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
      model.compile({ optimizer: 'sgd', loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
      model.setUserDefinedMetadata({ epoch: 3 });
      const encoded = await serialization.model.encode(model);
      fs.writeFileSync(request.file, JSON.stringify(encoded));
      answer = await describe(model);
      break;
    }
    default:
      throw new Error(`unknown op ${request.op}`);
  }
  // exit only once the (possibly large) answer is flushed to the pipe
  await new Promise((resolve) => process.stdout.write(`${JSON.stringify(answer)}\n`, resolve));
}

main().then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });
