// Chunks exactly as the real 2.1.1 client cuts a message for its data channel (peer.js `chunk`),
// so that Python can compare its own chunk framing with them, byte for byte.
//
// usage: node mixed_chunks.mjs '<json: {messageId, sizes: [n, ...]}>'
//   Message k is n_k bytes of (i mod 251); its message id is messageId + k.
// stdout: one JSON line, [[hex of each chunk] per message]
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Peer } = require('@epfml/discojs-node/dist/core/client/decentralized/peer.js');

const { messageId, sizes } = JSON.parse(process.argv[2] ?? '{}');
// `chunk` only reads the send counter and the remote's buffer size (a=max-message-size); no
// WebRTC connection is needed, so none is made.
const peer = Object.create(Peer.prototype);
peer.sendCounter = messageId;
peer.bufferSize = 262144;
const result = sizes.map((size) => {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) data[i] = i % 251;
  return peer.chunk(data).toArray().map((chunk) => chunk.toString('hex'));
});
process.stdout.write(`${JSON.stringify(result)}\n`);
