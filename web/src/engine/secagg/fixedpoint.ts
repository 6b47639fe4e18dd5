/**
 * Fixed-point vectors modulo 2^64 and their AES-CTR masks, bit for bit as the Python side
 * computes them (`disco.aggregation.masking`).
 *
 * A vector of n values is a `Uint32Array` of 2n limbs, (low, high) per value: on a little-endian
 * machine (every browser) its bytes are the little-endian uint64 array the server sums. Values
 * are rounded to nearest-even with `fractionalBits` fractional bits (numpy's `rint`) and held in
 * two's complement, so sums wrap modulo 2^64. A mask is the AES-256-CTR keystream of a 32-byte
 * seed from a zero counter block, read as little-endian uint64 (WebCrypto's AES-CTR).
 * Limb arithmetic on typed arrays: no BigInt in the loops, so a 1e5-value vector masks in ms.
 */

export const DEFAULT_FRACTIONAL_BITS = 24;
export const SEED_BYTES = 32;

const TWO_32 = 4294967296;
const INT64_MAX = (1n << 63n) - 1n;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error("secure aggregation needs a little-endian machine");
}

/** A fixed-point vector: (low, high) uint32 limbs of each uint64 value. */
export type FixedVector = Uint32Array;

/** A vector could not be encoded or a mask expanded (the message says why). */
export class FixedPointError extends Error {
  override name = "FixedPointError";
}

function checkBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < 0 || bits > 52) {
    throw new FixedPointError(`fractionalBits must be an integer in [0, 52], got ${bits}`);
  }
  return bits;
}

/** numpy's `rint`: to nearest, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties towards +infinity
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Largest |x| that `encode` accepts so that `summands` encoded vectors cannot overflow int64. */
export function encodingLimit(fractionalBits = DEFAULT_FRACTIONAL_BITS, summands = 1): number {
  if (!(summands >= 1) || !Number.isInteger(summands)) throw new FixedPointError("summands must be a positive integer");
  return Number(INT64_MAX / BigInt(summands)) / 2 ** checkBits(fractionalBits);
}

/** Reals as fixed-point (two's complement mod 2^64), summable `summands` times. */
export function encode(
  values: ArrayLike<number>,
  fractionalBits = DEFAULT_FRACTIONAL_BITS,
  summands = 1,
): FixedVector {
  const scale = 2 ** checkBits(fractionalBits);
  const limit = encodingLimit(fractionalBits, summands) * scale;
  const out = new Uint32Array(2 * values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number;
    if (!Number.isFinite(value)) throw new FixedPointError("values hold NaN or infinity");
    const scaled = roundHalfEven(value * scale);
    if (Math.abs(scaled) > limit) {
      throw new FixedPointError(
        `the value ${value} does not fit: with ${fractionalBits} fractional bits and ${summands} ` +
          `participants |x| must stay <= ${limit / scale}`,
      );
    }
    const high = Math.floor(scaled / TWO_32); // exact: a power-of-two division
    out[2 * i] = scaled - high * TWO_32;
    out[2 * i + 1] = high; // stored modulo 2^32: two's complement
  }
  return out;
}

/** The reals whose encodings sum to `total` modulo 2^64. */
export function decode(total: FixedVector, fractionalBits = DEFAULT_FRACTIONAL_BITS): Float64Array {
  const scale = 2 ** checkBits(fractionalBits);
  const out = new Float64Array(total.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = ((total[2 * i + 1] as number) | 0) * TWO_32 + (total[2 * i] as number);
    out[i] = (out[i] as number) / scale;
  }
  return out;
}

/** target += other modulo 2^64. */
export function addInto(target: FixedVector, other: FixedVector): void {
  for (let i = 0; i < target.length; i += 2) {
    const low = (target[i] as number) + (other[i] as number);
    target[i] = low;
    target[i + 1] = (target[i + 1] as number) + (other[i + 1] as number) + (low >= TWO_32 ? 1 : 0);
  }
}

/** target -= other modulo 2^64. */
export function subtractInto(target: FixedVector, other: FixedVector): void {
  for (let i = 0; i < target.length; i += 2) {
    const low = (target[i] as number) - (other[i] as number);
    target[i] = low;
    target[i + 1] = (target[i + 1] as number) - (other[i + 1] as number) - (low < 0 ? 1 : 0);
  }
}

let zeros = new Uint8Array(0);

/** `length` uint64 words of the AES-256-CTR keystream of `seed` (a CSPRNG stream). */
export async function expand(seed: Uint8Array, length: number): Promise<FixedVector> {
  if (seed.length !== SEED_BYTES) {
    throw new FixedPointError(`a mask seed is ${SEED_BYTES} bytes, got ${seed.length}`);
  }
  if (zeros.length < 8 * length) zeros = new Uint8Array(8 * length);
  const key = await crypto.subtle.importKey("raw", seed as BufferSource, "AES-CTR", false, ["encrypt"]);
  const stream = await crypto.subtle.encrypt(
    { name: "AES-CTR", counter: new Uint8Array(16), length: 128 },
    key,
    zeros.subarray(0, 8 * length),
  );
  return new Uint32Array(stream);
}

/** `encoded` + PRG(selfSeed) ± PRG(s_ij) for each neighbour j (+ when index < j). */
export async function mask(
  encoded: FixedVector,
  selfSeed: Uint8Array,
  pairSeeds: ReadonlyMap<number, Uint8Array>,
  index: number,
): Promise<FixedVector> {
  const length = encoded.length / 2;
  if (pairSeeds.has(index)) throw new FixedPointError("a participant has no pairwise mask with itself");
  const result = Uint32Array.from(encoded);
  // WebCrypto expands on its own thread: the next stream is computed while this one is added.
  const masks: [number, Uint8Array][] = [[0, selfSeed], ...pairSeeds];
  let next = expand(selfSeed, length);
  for (let k = 0; k < masks.length; k++) {
    const stream = await next;
    const following = masks[k + 1];
    if (following !== undefined) next = expand(following[1], length);
    const neighbour = (masks[k] as [number, Uint8Array])[0];
    if (k === 0 || index < neighbour) addInto(result, stream);
    else subtractInto(result, stream);
  }
  return result;
}

/** The little-endian uint64 bytes of a fixed-point vector (what travels). */
export function toBytes(vector: FixedVector): Uint8Array {
  return new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength);
}
