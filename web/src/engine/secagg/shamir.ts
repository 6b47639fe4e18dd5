/**
 * Shamir secret sharing over GF(2^521 - 1), as `disco.aggregation.shamir` does it: a share is
 * the random polynomial of degree `threshold - 1` with the secret as constant term, evaluated
 * at the holder's number, sent as 66 big-endian bytes. Coefficients come from
 * `crypto.getRandomValues`. BigInt is fine here: a round has a few dozen holders.
 */

export const PRIME = (1n << 521n) - 1n;
export const SHARE_BYTES = 66;

/** A share or secret that is not a field element, or bad split parameters. */
export class ShamirError extends Error {
  override name = "ShamirError";
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let hex = "0x0";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return BigInt(hex);
}

export function bigIntToBytes(value: bigint, length: number): Uint8Array {
  const hex = value.toString(16);
  if (value < 0n || hex.length > 2 * length) throw new ShamirError(`${value} does not fit in ${length} bytes`);
  const padded = hex.padStart(2 * length, "0");
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = parseInt(padded.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A uniform field element (rejection sampling over 521 random bits). */
function randomElement(): bigint {
  const bytes = new Uint8Array(SHARE_BYTES);
  for (;;) {
    crypto.getRandomValues(bytes);
    bytes[0] = (bytes[0] as number) & 0x01; // 521 = 65·8 + 1 bits
    const value = bytesToBigInt(bytes);
    if (value < PRIME) return value;
  }
}

function mod(value: bigint): bigint {
  const r = value % PRIME;
  return r < 0n ? r + PRIME : r;
}

/** Shares of `secret` for each point (distinct positive integers); `threshold` rebuild it. */
export function split(secret: bigint, points: readonly number[], threshold: number): Map<number, bigint> {
  if (secret < 0n || secret >= PRIME) throw new ShamirError("the secret must be a field element");
  if (new Set(points).size !== points.length || points.some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new ShamirError("share points must be distinct positive integers");
  }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > points.length) {
    throw new ShamirError(`threshold must be in [1, ${points.length}], got ${threshold}`);
  }
  const coefficients = [secret];
  for (let i = 1; i < threshold; i++) coefficients.push(randomElement());
  return evaluate(coefficients, points);
}

/** The polynomial with these coefficients (constant first) at each point, by Horner. */
export function evaluate(coefficients: readonly bigint[], points: readonly number[]): Map<number, bigint> {
  const shares = new Map<number, bigint>();
  for (const point of points) {
    const x = BigInt(point);
    let value = 0n;
    for (let i = coefficients.length - 1; i >= 0; i--) value = (value * x + (coefficients[i] as bigint)) % PRIME;
    shares.set(point, value);
  }
  return shares;
}

function power(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % PRIME;
    b = (b * b) % PRIME;
  }
  return result;
}

/** The secret from `threshold` shares {point: value} (Lagrange interpolation at 0). */
export function combine(shares: ReadonlyMap<number, bigint>): bigint {
  if (shares.size === 0) throw new ShamirError("no shares to combine");
  const points = [...shares.keys()];
  let secret = 0n;
  for (const xi of points) {
    let numerator = 1n;
    let denominator = 1n;
    for (const xj of points) {
      if (xj === xi) continue;
      numerator = mod(numerator * -BigInt(xj));
      denominator = mod(denominator * BigInt(xi - xj));
    }
    const value = shares.get(xi) as bigint;
    secret = mod(secret + value * numerator * power(denominator, PRIME - 2n));
  }
  return secret;
}

/** A field element as SHARE_BYTES big-endian bytes. */
export function shareToBytes(value: bigint): Uint8Array {
  if (value < 0n || value >= PRIME) throw new ShamirError("not a field element");
  return bigIntToBytes(value, SHARE_BYTES);
}

/** The field element of `shareToBytes`; refuses other lengths and values. */
export function shareFromBytes(bytes: Uint8Array): bigint {
  if (bytes.length !== SHARE_BYTES) throw new ShamirError(`a share is ${SHARE_BYTES} bytes, got ${bytes.length}`);
  const value = bytesToBigInt(bytes);
  if (value >= PRIME) throw new ShamirError("a share is not a field element");
  return value;
}
