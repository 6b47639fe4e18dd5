// Runs TF.js layers models in @tensorflow/tfjs (node) on given inputs.
// stdin: JSON {modelTopology, weightSpecs, weightData (base64 float32 LE), inputs: [{shape, data (base64 f32)}]}
//        or {models: [such objects]} to run many models in one process.
// stdout: one JSON line {outputs: [{shape, data (base64 f32)}]}, or {results: [{outputs} | {error}]}
import * as tf from '@tensorflow/tfjs';

setTimeout(() => { console.error('tfjs_predict: timeout'); process.exit(2); }, 60000).unref();

const toF32 = (b64) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};

async function predict(request) {
  const weightBytes = Buffer.from(request.weightData, 'base64');
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: request.modelTopology,
    weightSpecs: request.weightSpecs,
    weightData: weightBytes.buffer.slice(weightBytes.byteOffset, weightBytes.byteOffset + weightBytes.byteLength),
  }));
  const outputs = [];
  for (const input of request.inputs) {
    const x = tf.tensor(toF32(input.data), input.shape, 'float32');
    const y = model.predict(x);
    const data = await y.data();
    outputs.push({ shape: y.shape, data: Buffer.from(new Float32Array(data).buffer).toString('base64') });
  }
  model.dispose();
  return { outputs };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
if (Array.isArray(request.models)) {
  const results = [];
  for (const one of request.models) {
    try {
      results.push(await predict(one));
    } catch (error) {
      results.push({ error: String(error && error.stack ? error.stack : error) });
    }
  }
  console.log(JSON.stringify({ results }));
} else {
  console.log(JSON.stringify(await predict(request)));
}
