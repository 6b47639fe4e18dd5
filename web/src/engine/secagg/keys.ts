/**
 * Key agreement, key derivation and share encryption through WebCrypto, byte for byte as
 * `disco.secagg.keys`: X25519 where `crypto.subtle` has it (else P-256 ECDH), public keys raw
 * (32 bytes, or P-256's 65-byte uncompressed point), HKDF-SHA256 with the round's session id as
 * salt and `disco-secagg/<purpose>/<low>/<high>` as info, AES-256-GCM with a 12-byte random nonce
 * in front and (session, sender, recipient) as associated data. A private key becomes an
 * integer for Shamir sharing through its JWK `d` (X25519's raw 32 bytes / P-256's scalar),
 * read big-endian, which is how the server turns it back into a key when a member drops.
 */

import { bigIntToBytes, bytesToBigInt } from "./shamir.js";

export type Curve = "x25519" | "p256";

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const PUBLIC_KEY_BYTES: Record<Curve, number> = { x25519: 32, p256: 65 };

/** A key, share or message of the secure round that cannot be used (the message says why). */
export class SecAggError extends Error {
  override name = "SecAggError";
}

const ALGORITHM: Record<Curve, EcKeyImportParams | Algorithm> = {
  x25519: { name: "X25519" },
  p256: { name: "ECDH", namedCurve: "P-256" },
};

let offered: Promise<Curve[]> | null = null;

/** The curves this browser offers, by preference: X25519 when WebCrypto has it, and P-256. */
export function supportedCurves(): Promise<Curve[]> {
  offered ??= (async (): Promise<Curve[]> => {
    try {
      await KeyPair.generate("x25519");
      return ["x25519", "p256"];
    } catch {
      return ["p256"];
    }
  })();
  return offered;
}

/** A key-agreement key pair (the private key is extractable: it is Shamir-shared). */
export class KeyPair {
  private constructor(
    readonly curve: Curve,
    private readonly privateKey: CryptoKey,
    readonly publicKey: Uint8Array,
  ) {}

  static async generate(curve: Curve): Promise<KeyPair> {
    const pair = (await crypto.subtle.generateKey(ALGORITHM[curve], true, ["deriveBits"])) as CryptoKeyPair;
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return new KeyPair(curve, pair.privateKey, raw);
  }

  /** The private key as a non-negative integer below 2^256 (as the server reads it back). */
  async secret(): Promise<bigint> {
    const jwk = await crypto.subtle.exportKey("jwk", this.privateKey);
    if (typeof jwk.d !== "string") throw new SecAggError("the private key cannot be exported");
    return bytesToBigInt(fromBase64Url(jwk.d));
  }

  /** The ECDH shared secret (32 bytes) with a peer's raw public key. */
  async agree(peerPublic: Uint8Array): Promise<Uint8Array> {
    if (peerPublic.length !== PUBLIC_KEY_BYTES[this.curve]) {
      throw new SecAggError(`a ${this.curve} public key is ${PUBLIC_KEY_BYTES[this.curve]} bytes`);
    }
    try {
      const peer = await crypto.subtle.importKey("raw", peerPublic as BufferSource, ALGORITHM[this.curve], false, []);
      const name = this.curve === "x25519" ? "X25519" : "ECDH";
      return new Uint8Array(await crypto.subtle.deriveBits({ name, public: peer }, this.privateKey, 8 * KEY_BYTES));
    } catch (error) {
      throw new SecAggError(`invalid ${this.curve} public key: ${String(error)}`);
    }
  }
}

function fromBase64Url(text: string): Uint8Array {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function uint32(value: number): Uint8Array {
  return bigIntToBytes(BigInt(value), 4);
}

export type Purpose = "mask" | "share";

/** A 32-byte key for (session, purpose, unordered pair {a, b}) from an ECDH secret. */
export async function derive(
  shared: Uint8Array,
  session: Uint8Array,
  purpose: Purpose,
  a: number,
  b: number,
): Promise<Uint8Array> {
  const info = new TextEncoder().encode(`disco-secagg/${purpose}/${Math.min(a, b)}/${Math.max(a, b)}`);
  const key = await crypto.subtle.importKey("raw", shared as BufferSource, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: session as BufferSource, info: info as BufferSource },
    key,
    8 * KEY_BYTES,
  );
  return new Uint8Array(bits);
}

function aad(session: Uint8Array, sender: number, recipient: number): Uint8Array {
  return concat(session, uint32(sender), uint32(recipient));
}

async function gcmKey(key: Uint8Array, usage: KeyUsage): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", key as BufferSource, "AES-GCM", false, [usage]);
}

/** nonce || AES-GCM(plaintext), bound to (session, sender, recipient). */
export async function encrypt(
  key: Uint8Array,
  plaintext: Uint8Array,
  session: Uint8Array,
  sender: number,
  recipient: number,
): Promise<Uint8Array> {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: aad(session, sender, recipient) as BufferSource },
    await gcmKey(key, "encrypt"),
    plaintext as BufferSource,
  );
  return concat(nonce, new Uint8Array(sealed));
}

/** The plaintext of `encrypt`; SecAggError when it was altered or is for someone else. */
export async function decrypt(
  key: Uint8Array,
  sealed: Uint8Array,
  session: Uint8Array,
  sender: number,
  recipient: number,
): Promise<Uint8Array> {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new SecAggError("an encrypted share is too short");
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: sealed.slice(0, NONCE_BYTES), additionalData: aad(session, sender, recipient) as BufferSource },
      await gcmKey(key, "decrypt"),
      sealed.slice(NONCE_BYTES),
    );
    return new Uint8Array(plain);
  } catch {
    throw new SecAggError(`the share from participant ${sender} does not decrypt`);
  }
}

/** SHA-256 commitment to a self-mask seed (the server checks the rebuilt seed against it). */
export async function commitment(session: Uint8Array, index: number, seed: Uint8Array): Promise<Uint8Array> {
  const data = concat(new TextEncoder().encode("disco-secagg/seed"), session, uint32(index), seed);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
}
