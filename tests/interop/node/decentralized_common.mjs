// Plumbing shared by the decentralized interop scripts, on top of common.mjs (one JSON result
// line on stdout, logs on stderr, hard timeout): loopback-only WebRTC, float32 transport, tasks.
import { createRequire } from 'node:module';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const require = createRequire(import.meta.url);

// Keep WebRTC on loopback before the client creates any peer (idempotent with --require).
export const loopback = require('./loopback_wrtc.cjs');

// common.mjs drops the client's console.debug; keep it on stderr when asked (diagnosis).
if (process.env.DISCO_INTEROP_DEBUG) console.debug = (...args) => console.error(...args);

/** The JSON request file named on the command line. */
export async function readRequest(file) {
  if (file === undefined) throw new Error('usage: node <script> <request.json>');
  return JSON.parse(await readFile(file, 'utf8'));
}

/**
 * Before disconnecting: say this peer is done, then wait until every peer of the test is.
 *
 * `barrier` (from the request, optional): {dir, parties}; each peer writes `<dir>/<pid>.done`
 * and waits (bounded by the script's overall timeout) until `parties` such files exist. The
 * 2.1.1 client does not wait for its own sends: ClearText sends its weights from a `.then` it
 * never awaits, SecAgg its partial sums with `void`. A peer whose last round ends when the
 * others' messages are all in returns at once, and disconnecting then destroys its peer
 * connections before its own last message left (simple-peer drops the channel's buffered data):
 * a peer still waiting for it waits forever. Leaving together changes only when a peer leaves,
 * never what it sends.
 */
export async function leaveTogether(barrier) {
  if (barrier === undefined) return;
  await writeFile(join(barrier.dir, `${process.pid}.done`), '');
  for (;;) {
    const done = (await readdir(barrier.dir)).filter((name) => name.endsWith('.done'));
    if (done.length >= barrier.parties) return;
    await new Promise((resolve) => { setTimeout(resolve, 20); });
  }
}

/** Float32 values of a base64 string of little-endian float32. */
export function f32FromBase64(b64) {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** base64 of little-endian float32 values. */
export function base64FromF32(values) {
  const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
  return Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength).toString('base64');
}

/** The task `taskID` as the client's own `fetchTasks` gets it from GET /tasks (isTask-checked). */
export async function fetchTask(discojs, url, taskID) {
  const task = (await discojs.fetchTasks(url)).get(taskID);
  if (task === undefined) throw new Error(`task ${taskID} is not listed by the server`);
  return task;
}

/** The decentralized client class a task asks for: SecAgg when `decentralizedSecure`. */
export function clientClass(discojs, task) {
  const { ClearText, SecAgg } = discojs.client.decentralized;
  return task.trainingInformation.decentralizedSecure === true ? SecAgg : ClearText;
}

// ---------------------------------------------------------------------------------------------
// Two races inside the 2.1.1 client, independent of the server, that otherwise make these tests
// flaky on a loaded machine (seen: 2 failures in ~100 runs with 3 test sessions on 2 cores):
//
// 1. A peer's weights for round r+1 can arrive (over the already open data channel) before this
//    peer has handled its own PeersForRound for r+1. Its PeerConnection emits them to nobody
//    (listeners are registered with `once` only when PeersForRound is handled), so the message is
//    lost and receiveWeights/receiveShares waits forever.
// 2. A WebRTC signal from a peer can be handled before the PeersForRound that announced that peer
//    (both frames read in one tick: the signal handler needs one microtask hop, the round start
//    several), and PeerPool.signal throws "received signal for unknown peer".
//
// Both are fixed here by holding such early messages until the client is ready for them, which
// only changes *when* a message is handled, never what is sent: the server cannot order
// peer-to-peer traffic against its own frames, and a server-side delay would only make it rarer.
// `races` counts how often each fix kicked in (reported by the scripts).
export const races = { earlyPeerMessages: 0, earlySignals: 0 };

const clientDir = (file) => require.resolve(`@epfml/discojs-node/dist/core/client/${file}`);
const { PeerConnection } = require(clientDir('event_connection.js'));
const { PeerPool } = require(clientDir('decentralized/peer_pool.js'));

const connect = PeerConnection.prototype.connect;
PeerConnection.prototype.connect = function (...args) {
  const emitter = this.eventEmitter;
  const held = new Map(); // message type -> [args of emits nobody listened to]
  const emit = emitter.emit.bind(emitter);
  emitter.emit = (type, ...rest) => {
    if (emitter.listenerCount(type) > 0) return emit(type, ...rest);
    races.earlyPeerMessages += 1;
    held.set(type, [...(held.get(type) ?? []), rest]);
    return false;
  };
  const once = emitter.once.bind(emitter);
  emitter.once = (type, listener) => {
    const queue = held.get(type);
    if (queue !== undefined && queue.length > 0) {
      const rest = queue.shift();
      process.nextTick(() => listener(...rest));
      return emitter;
    }
    return once(type, listener);
  };
  return connect.apply(this, args);
};

const heldSignals = new WeakMap(); // pool -> [[peerID, signal]]
const signal = PeerPool.prototype.signal;
PeerPool.prototype.signal = function (peerID, data) {
  if (this.peers.has(peerID)) return signal.call(this, peerID, data);
  races.earlySignals += 1;
  heldSignals.set(this, [...(heldSignals.get(this) ?? []), [peerID, data]]);
  return undefined;
};
const getPeers = PeerPool.prototype.getPeers;
PeerPool.prototype.getPeers = function (...args) {
  // The body runs synchronously up to its first await, by which point the new peers are pooled.
  const connected = getPeers.apply(this, args);
  const pending = heldSignals.get(this) ?? [];
  heldSignals.set(this, pending.filter(([id]) => !this.peers.has(id)));
  for (const [id, data] of pending) {
    if (this.peers.has(id)) signal.call(this, id, data);
  }
  return connected;
};
