/**
 * Model weights as plain arrays in the TF.js exchange order (the model's `weights`, as in
 * model.json's weightsManifest), and the server's compact native encoding of them.
 */

import * as tf from "@tensorflow/tfjs";

/** One tensor: its shape and float32 values. */
export interface Tensor {
  shape: number[];
  values: Float32Array;
}

export type Weights = Tensor[];

/** The `f32le` tag of the native encoding (`disco.protocol.weights`). */
export const NATIVE_TAG = "f32le";

/** `{encoding: "f32le", shapes, data}`: float32 little-endian values of every tensor in order. */
export interface NativeWeights {
  encoding: typeof NATIVE_TAG;
  shapes: number[][];
  data: Uint8Array;
}

/** The model's weights (copies), in exchange order. */
export function modelWeights(model: tf.LayersModel): Weights {
  return model.weights.map((weight) => {
    const value = weight.read();
    return { shape: [...value.shape], values: value.dataSync() as Float32Array };
  });
}

/** Replace the model's weights (same order and shapes as `modelWeights`). */
export function setModelWeights(model: tf.LayersModel, weights: Weights): void {
  if (weights.length !== model.weights.length) {
    throw new Error(`expected ${model.weights.length} weight tensors, got ${weights.length}`);
  }
  const tensors = weights.map((w) => tf.tensor(w.values, w.shape, "float32"));
  try {
    model.setWeights(tensors);
  } finally {
    tf.dispose(tensors);
  }
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

/** Weights in the native encoding (little-endian: every browser engine is). */
export function encodeNative(weights: Weights): NativeWeights {
  if (!isLittleEndian()) throw new Error("a big-endian machine cannot use the native encoding");
  const total = weights.reduce((n, w) => n + w.values.length, 0);
  const flat = new Float32Array(total);
  let offset = 0;
  for (const w of weights) {
    flat.set(w.values, offset);
    offset += w.values.length;
  }
  return {
    encoding: NATIVE_TAG,
    shapes: weights.map((w) => [...w.shape]),
    data: new Uint8Array(flat.buffer),
  };
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isInteger(d) && (d as number) >= 0);
}

/** Decode (and check) native weights received from the server or a peer. */
export function decodeNative(payload: unknown): Weights {
  if (typeof payload !== "object" || payload === null) {
    throw new Error("native weights must be a map");
  }
  const { encoding, shapes, data } = payload as Record<string, unknown>;
  if (encoding !== NATIVE_TAG) throw new Error(`native weights need encoding '${NATIVE_TAG}'`);
  if (!Array.isArray(shapes) || !shapes.every(isShape)) {
    throw new Error("native weights: 'shapes' must be an array of shapes");
  }
  if (!(data instanceof Uint8Array)) throw new Error("native weights: 'data' must be binary");
  const sizes = shapes.map((shape) => shape.reduce((a, b) => a * b, 1));
  const expected = 4 * sizes.reduce((a, b) => a + b, 0);
  if (data.byteLength !== expected) {
    throw new Error(`native weights: 'data' holds ${data.byteLength} bytes, the shapes need ${expected}`);
  }
  const flat = new Float32Array(data.slice().buffer); // copy: aligned and owned
  const out: Weights = [];
  let offset = 0;
  shapes.forEach((shape, i) => {
    const size = sizes[i] ?? 0;
    out.push({ shape: [...shape], values: flat.slice(offset, offset + size) });
    offset += size;
  });
  return out;
}

/** Check that `weights` fit `reference` (count and shapes). */
export function checkCompatible(weights: Weights, reference: Weights): void {
  if (weights.length !== reference.length) {
    throw new Error(`expected ${reference.length} weight tensors, got ${weights.length}`);
  }
  weights.forEach((w, i) => {
    const want = reference[i]?.shape ?? [];
    if (w.shape.length !== want.length || w.shape.some((d, j) => d !== want[j])) {
      throw new Error(`weight tensor ${i} has shape [${w.shape.join(",")}], expected [${want.join(",")}]`);
    }
  });
}
