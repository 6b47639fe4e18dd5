/**
 * Peer-to-peer messages of decentralized rounds, as a 2.1.1 JS peer sends them:
 * `{type: 5, peer, weights}`, `{type: 6, peer, weights}` (secret shares), `{type: 7, peer,
 * partials}` (partial sums); `peer` is the recipient. The payload is the legacy encoding (an
 * array of the byte-integers of msgpack `[{shape, data}]`, values as float64), the only one JS
 * peers accept; Python peers send it to the browser too (it does not announce itself as Python).
 * The native `f32le` / `f64le` maps are accepted on receipt as well.
 */

import { decode, encode } from "@msgpack/msgpack";

import type { Weights } from "../weights.js";

export const enum PeerMessageType {
  Weights = 5,
  Shares = 6,
  PartialSums = 7,
}

export interface PeerMessage {
  type: PeerMessageType;
  peer: number;
  /** Tensors as float64 values (legacy payloads carry float64). */
  tensors: { shape: number[]; values: Float64Array }[];
}

export class PeerMessageError extends Error {
  override name = "PeerMessageError";
}

function field(type: PeerMessageType): "weights" | "partials" {
  return type === PeerMessageType.PartialSums ? "partials" : "weights";
}

/** A tensor list in the legacy encoding: byte-integers of msgpack [{shape, data}]. */
export function encodeLegacy(tensors: readonly { shape: readonly number[]; values: ArrayLike<number> }[]): number[] {
  const packed = encode(tensors.map((t) => ({ shape: [...t.shape], data: Array.from(t.values) })));
  return Array.from(packed);
}

/** The msgpack bytes of one peer message. */
export function encodePeerMessage(
  type: PeerMessageType,
  peer: number,
  tensors: readonly { shape: readonly number[]; values: ArrayLike<number> }[],
): Uint8Array {
  return encode({ type, peer, [field(type)]: encodeLegacy(tensors) });
}

function checkShape(shape: unknown, index: number): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
    throw new PeerMessageError(`tensor ${index}: bad shape`);
  }
  return shape as number[];
}

function decodePayload(payload: unknown): PeerMessage["tensors"] {
  if (Array.isArray(payload) || payload instanceof Uint8Array) {
    const bytes = payload instanceof Uint8Array ? payload : Uint8Array.from(payload as number[]);
    const list = decode(bytes);
    if (!Array.isArray(list)) throw new PeerMessageError("legacy payload is not an array");
    return list.map((entry: unknown, i) => {
      if (typeof entry !== "object" || entry === null) throw new PeerMessageError(`tensor ${i}: not a map`);
      const { shape, data } = entry as { shape?: unknown; data?: unknown };
      const dims = checkShape(shape, i);
      if (!Array.isArray(data) || !data.every((v) => typeof v === "number")) {
        throw new PeerMessageError(`tensor ${i}: data must be numbers`);
      }
      if (data.length !== dims.reduce((a, b) => a * b, 1)) {
        throw new PeerMessageError(`tensor ${i}: shape and data length disagree`);
      }
      return { shape: dims, values: Float64Array.from(data) };
    });
  }
  if (typeof payload === "object" && payload !== null) {
    const { encoding, shapes, data } = payload as { encoding?: unknown; shapes?: unknown; data?: unknown };
    const width = encoding === "f32le" ? 4 : encoding === "f64le" ? 8 : 0;
    if (width === 0 || !Array.isArray(shapes) || !(data instanceof Uint8Array)) {
      throw new PeerMessageError(`unknown peer payload encoding ${String(encoding)}`);
    }
    const dims = shapes.map(checkShape);
    const sizes = dims.map((s) => s.reduce((a, b) => a * b, 1));
    if (data.byteLength !== width * sizes.reduce((a, b) => a + b, 0)) {
      throw new PeerMessageError("payload data and shapes disagree");
    }
    const copy = data.slice().buffer;
    const flat = width === 4 ? Float64Array.from(new Float32Array(copy)) : new Float64Array(copy);
    let offset = 0;
    return dims.map((shape, i) => {
      const size = sizes[i] ?? 0;
      const values = flat.slice(offset, offset + size);
      offset += size;
      return { shape, values };
    });
  }
  throw new PeerMessageError("peer message payload must be an array or a map");
}

/** Decode and check one reassembled peer message. */
export function decodePeerMessage(bytes: Uint8Array): PeerMessage {
  let message: unknown;
  try {
    message = decode(bytes);
  } catch (error) {
    throw new PeerMessageError(`undecodable peer message: ${String(error)}`);
  }
  if (typeof message !== "object" || message === null) throw new PeerMessageError("peer message is not a map");
  const { type, peer } = message as { type?: unknown; peer?: unknown };
  if (type !== 5 && type !== 6 && type !== 7) throw new PeerMessageError(`peer message has type ${String(type)}`);
  if (typeof peer !== "number" || !Number.isInteger(peer) || peer < 0) {
    throw new PeerMessageError("peer message: 'peer' must be a peer id");
  }
  const name = field(type);
  if (!(name in message)) throw new PeerMessageError(`peer message of type ${type} has no '${name}'`);
  return { type: type, peer, tensors: decodePayload((message as Record<string, unknown>)[name]) };
}

/** Check tensors against the model's shapes and for NaN/Inf. */
export function checkTensors(tensors: PeerMessage["tensors"], reference: Weights): void {
  if (tensors.length !== reference.length) {
    throw new PeerMessageError(`expected ${reference.length} tensors, got ${tensors.length}`);
  }
  tensors.forEach((t, i) => {
    const want = reference[i]?.shape ?? [];
    if (t.shape.length !== want.length || t.shape.some((d, j) => d !== want[j])) {
      throw new PeerMessageError(`tensor ${i} has shape [${t.shape.join(",")}], expected [${want.join(",")}]`);
    }
    if (!t.values.every(Number.isFinite)) throw new PeerMessageError(`tensor ${i} holds NaN or Inf`);
  });
}
