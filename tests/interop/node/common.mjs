// Shared plumbing of the interop scripts: one JSON result line on stdout, logs on stderr,
// a hard overall timeout, and weight digests that Python can recompute from served bytes.
import { createHash } from 'node:crypto';
import discojs from '@epfml/discojs-node';

export { discojs };
export const tf = discojs.tf;

// The client and tfjs log with console.log; stdout is reserved for the single result line.
const writeResult = process.stdout.write.bind(process.stdout);
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);
console.debug = () => {};

/** Run `body(argv)` under a hard timeout; print its result as one JSON line; exit 0, 1 on error, 2 on timeout. */
export async function main(name, timeoutMs, body) {
  const timer = setTimeout(() => {
    console.error(`${name}: overall timeout after ${timeoutMs} ms`);
    process.exit(2);
  }, timeoutMs);
  timer.unref();
  // The client throws from socket callbacks (e.g. an unexpected message type): report, don't hang.
  process.on('uncaughtException', (err) => {
    console.error(`${name}: uncaught exception:`, err);
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    console.error(`${name}: unhandled rejection:`, err);
    process.exit(1);
  });
  let result;
  try {
    result = await body(process.argv.slice(2));
  } catch (err) {
    console.error(`${name}: failed:`, err);
    process.exit(1);
  }
  // The client leaves 10 s timers and sockets behind: exit explicitly once the line is flushed.
  writeResult(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

/** A base URL that ends with '/': the 2.1.1 client appends paths to `url.href` verbatim. */
export function baseURL(raw) {
  return new URL(raw.endsWith('/') ? raw : `${raw}/`);
}

/** Float32 little-endian bytes of a typed array (copy-free when already float32). */
function f32Bytes(values) {
  const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
  return Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength);
}

/** sha256 (hex) of the float32 LE bytes of one tensor, as the server stores it. */
export function tensorDigest(tensor) {
  const values = tensor.dataSync();
  return {
    shape: tensor.shape,
    sha256: createHash('sha256').update(f32Bytes(values)).digest('hex'),
    finite: values.every((v) => Number.isFinite(v)),
  };
}

/** Digest of a list of tensors: per tensor and of the concatenation (order as given). */
export function weightsDigest(tensors, names) {
  const all = createHash('sha256');
  const entries = tensors.map((t, i) => {
    all.update(f32Bytes(t.dataSync()));
    return { name: names === undefined ? null : names[i], ...tensorDigest(t) };
  });
  return {
    tensors: entries,
    sha256: all.digest('hex'),
    finite: entries.every((e) => e.finite),
  };
}

/** Digest of a layers model's weights, named by their un-suffixed variable names. */
export function modelDigest(model) {
  return weightsDigest(
    model.weights.map((w) => w.read()),
    model.weights.map((w) => w.originalName),
  );
}

/** Parse a JSON command-line option, or return `fallback` when absent. */
export function jsonArg(raw, fallback) {
  return raw === undefined || raw === '' ? fallback : JSON.parse(raw);
}
