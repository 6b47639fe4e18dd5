/**
 * One participant's side of a federated secure-aggregation round (SecAgg+), the same state
 * machine as `disco.secagg.Participant` so that browsers and Python clients share a round:
 * 1. `advertisement()`: fresh public keys (cipher + mask) per offered curve;
 * 2. `share(roster, index)`: draws the self-mask seed b, Shamir-shares b and the mask private
 *    key among its neighbourhood, seals each neighbour's shares (AES-GCM under the cipher key
 *    agreed with it) and commits to b;
 * 3. `receive(sealed, sharers)`: keeps the shares relayed to it (one that does not decrypt is
 *    ignored) and learns who shared (U1);
 * 4. `masked(vector)`: the fixed-point vector plus its self mask and the pairwise masks with its
 *    neighbours in U1;
 * 5. `reveal(survivors, dropped)`: b-shares of surviving neighbours, key shares of dropped ones,
 *    never both for one participant, and only when at least `threshold` survive.
 * One object serves one round.
 */

import { SEED_BYTES, encode, mask, toBytes } from "./fixedpoint.js";
import { KeyPair, PUBLIC_KEY_BYTES, SecAggError, commitment, decrypt, derive, encrypt } from "./keys.js";
import type { Curve } from "./keys.js";
import { SHARE_BYTES, bytesToBigInt, shareFromBytes, shareToBytes, split } from "./shamir.js";

export const SESSION_BYTES = 16;
/** A relayed share: the b-share then the mask-key share. */
export const SHARE_PLAINTEXT_BYTES = 2 * SHARE_BYTES;

export interface PublicKeys {
  cipher: Uint8Array;
  mask: Uint8Array;
}

/** Participant `index`'s neighbours (1-based) in the round's circulant graph of `degree`. */
export function neighbours(index: number, n: number, degree: number): number[] {
  if (!(index >= 1 && index <= n)) throw new SecAggError(`participant ${index} is not in a round of ${n}`);
  const all: number[] = [];
  if (degree >= n - 1) {
    for (let j = 1; j <= n; j++) if (j !== index) all.push(j);
    return all;
  }
  const half = Math.floor(degree / 2);
  const around = new Set<number>();
  for (let d = -half; d <= half; d++) {
    if (d !== 0) around.add((((index - 1 + d) % n) + n) % n + 1);
  }
  return [...around].sort((a, b) => a - b);
}

/** The fixed facts of a round (`disco.secagg.Roster`), checked as the Python side checks them. */
export class Roster {
  private readonly graph = new Map<number, number[]>();

  constructor(
    readonly session: Uint8Array,
    readonly curve: Curve,
    readonly keys: ReadonlyMap<number, PublicKeys>,
    readonly degree: number,
    readonly threshold: number,
    readonly vectorLength: number,
    readonly fractionalBits: number,
  ) {
    const n = keys.size;
    for (let i = 1; i <= n; i++) if (!keys.has(i)) throw new SecAggError("participants must be numbered 1..n");
    if (session.length !== SESSION_BYTES) throw new SecAggError(`a session id is ${SESSION_BYTES} bytes`);
    if (!Number.isInteger(degree) || degree < 0 || degree > Math.max(0, n - 1)) {
      throw new SecAggError(`the graph degree must be in [0, ${Math.max(0, n - 1)}]`);
    }
    if (degree < n - 1 && degree % 2 !== 0) throw new SecAggError("a sparse graph's degree must be even");
    if (!Number.isInteger(threshold) || threshold < 1 || threshold > degree + 1) {
      throw new SecAggError(`the threshold must be in [1, ${degree + 1}]`);
    }
    if (!Number.isInteger(vectorLength) || vectorLength < 1) throw new SecAggError("the vector length must be positive");
    for (const k of keys.values()) {
      if (k.cipher.length !== PUBLIC_KEY_BYTES[curve] || k.mask.length !== PUBLIC_KEY_BYTES[curve]) {
        throw new SecAggError(`a ${curve} public key is ${PUBLIC_KEY_BYTES[curve]} bytes`);
      }
    }
    for (const index of keys.keys()) this.graph.set(index, neighbours(index, n, degree));
  }

  get size(): number {
    return this.keys.size;
  }

  neighbours(index: number): number[] {
    const found = this.graph.get(index);
    if (found === undefined) throw new SecAggError(`participant ${index} is not in the round`);
    return found;
  }

  /** Who holds shares of `index`'s seeds: its neighbours and itself. */
  holders(index: number): number[] {
    return [...this.neighbours(index), index].sort((a, b) => a - b);
  }

  publicKeys(index: number): PublicKeys {
    const found = this.keys.get(index);
    if (found === undefined) throw new SecAggError(`participant ${index} is not in the round`);
    return found;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export interface Shares {
  sealed: Map<number, Uint8Array>;
  commitment: Uint8Array;
}

/** A participant of one secure-aggregation round (module docstring). */
export class Participant {
  private roster: Roster | null = null;
  private ownIndex = 0;
  private seed = new Uint8Array(0);
  private own: [bigint, bigint] = [0n, 0n];
  private readonly received = new Map<number, [bigint, bigint]>();
  private sharers = new Set<number>();
  private revealed = false;

  private constructor(private readonly keys: Map<Curve, [KeyPair, KeyPair]>) {}

  /** Fresh cipher and mask key pairs for each curve offered. */
  static async create(curves: readonly Curve[]): Promise<Participant> {
    if (curves.length === 0) throw new SecAggError("a participant offers at least one curve");
    const keys = new Map<Curve, [KeyPair, KeyPair]>();
    for (const curve of curves) keys.set(curve, [await KeyPair.generate(curve), await KeyPair.generate(curve)]);
    return new Participant(keys);
  }

  /** Public keys to send, by curve. */
  advertisement(): Map<Curve, PublicKeys> {
    const out = new Map<Curve, PublicKeys>();
    for (const [curve, [cipher, maskKey]] of this.keys) out.set(curve, { cipher: cipher.publicKey, mask: maskKey.publicKey });
    return out;
  }

  get index(): number {
    return this.ownIndex;
  }

  private pairOf(roster: Roster): [KeyPair, KeyPair] {
    const pair = this.keys.get(roster.curve);
    if (pair === undefined) throw new SecAggError(`the round uses ${roster.curve}, which this participant did not offer`);
    return pair;
  }

  private checked(): Roster {
    if (this.roster === null) throw new SecAggError("no roster yet");
    return this.roster;
  }

  /** Step 2: shares of b and of the mask key for each neighbour, sealed for it. */
  async share(roster: Roster, index: number): Promise<Shares> {
    if (this.roster !== null) throw new SecAggError("this participant already shared its seeds");
    const [cipher, maskKey] = this.pairOf(roster);
    const mine = roster.publicKeys(index);
    if (!equal(mine.cipher, cipher.publicKey) || !equal(mine.mask, maskKey.publicKey)) {
      throw new SecAggError(`the roster's keys for participant ${index} are not this one's`);
    }
    this.roster = roster;
    this.ownIndex = index;
    this.seed = crypto.getRandomValues(new Uint8Array(SEED_BYTES));
    const holders = roster.holders(index);
    const bShares = split(bytesToBigInt(this.seed), holders, roster.threshold);
    const keyShares = split(await maskKey.secret(), holders, roster.threshold);
    this.own = [bShares.get(index) as bigint, keyShares.get(index) as bigint];
    const sealed = new Map<number, Uint8Array>();
    for (const j of roster.neighbours(index)) {
      const key = await derive(await cipher.agree(roster.publicKeys(j).cipher), roster.session, "share", index, j);
      const plaintext = new Uint8Array(SHARE_PLAINTEXT_BYTES);
      plaintext.set(shareToBytes(bShares.get(j) as bigint), 0);
      plaintext.set(shareToBytes(keyShares.get(j) as bigint), SHARE_BYTES);
      sealed.set(j, await encrypt(key, plaintext, roster.session, index, j));
    }
    return { sealed, commitment: await commitment(roster.session, index, this.seed) };
  }

  /** Step 3: keep the shares relayed from neighbours; U1 = `sharers`. Returns the senders whose
   * share did not decrypt or parse (they are ignored). */
  async receive(sealed: ReadonlyMap<number, Uint8Array>, sharers: readonly number[]): Promise<number[]> {
    const roster = this.checked();
    const [cipher] = this.pairOf(roster);
    const near = new Set(roster.neighbours(this.ownIndex));
    this.sharers = new Set(sharers.filter((j) => roster.keys.has(j)));
    this.sharers.add(this.ownIndex);
    const refused: number[] = [];
    for (const [sender, box] of sealed) {
      if (!near.has(sender) || !this.sharers.has(sender)) {
        refused.push(sender);
        continue;
      }
      try {
        const key = await derive(
          await cipher.agree(roster.publicKeys(sender).cipher), roster.session, "share", sender, this.ownIndex,
        );
        const plain = await decrypt(key, box, roster.session, sender, this.ownIndex);
        if (plain.length !== SHARE_PLAINTEXT_BYTES) throw new SecAggError("a relayed share has the wrong length");
        this.received.set(sender, [
          shareFromBytes(plain.subarray(0, SHARE_BYTES)),
          shareFromBytes(plain.subarray(SHARE_BYTES)),
        ]);
      } catch {
        refused.push(sender);
      }
    }
    return refused;
  }

  /** Step 4: the masked fixed-point encoding of `vector` (little-endian uint64 bytes). */
  async masked(vector: ArrayLike<number>): Promise<Uint8Array> {
    const roster = this.checked();
    if (this.sharers.size === 0) throw new SecAggError("masking needs the list of participants who shared (step 3)");
    if (vector.length !== roster.vectorLength) {
      throw new SecAggError(`the vector has ${vector.length} values, the round ${roster.vectorLength}`);
    }
    let encoded;
    try {
      encoded = encode(vector, roster.fractionalBits, roster.size);
    } catch (error) {
      throw new SecAggError(error instanceof Error ? error.message : String(error));
    }
    const [, maskKey] = this.pairOf(roster);
    const pairSeeds = new Map<number, Uint8Array>();
    for (const j of roster.neighbours(this.ownIndex)) {
      if (!this.sharers.has(j)) continue;
      pairSeeds.set(j, await derive(await maskKey.agree(roster.publicKeys(j).mask), roster.session, "mask", this.ownIndex, j));
    }
    return toBytes(await mask(encoded, this.seed, pairSeeds, this.ownIndex));
  }

  /** Step 5: {participant: share}; refuses inconsistent requests (module docstring). */
  reveal(survivors: readonly number[], dropped: readonly number[]): Map<number, Uint8Array> {
    const roster = this.checked();
    if (this.revealed) throw new SecAggError("this participant already revealed its shares");
    const alive = new Set(survivors);
    const gone = new Set(dropped);
    if ([...alive].some((j) => gone.has(j))) throw new SecAggError("a participant cannot be both a survivor and dropped");
    if (!alive.has(this.ownIndex)) throw new SecAggError("this participant is not among the survivors");
    if ([...alive, ...gone].some((j) => !this.sharers.has(j))) {
      throw new SecAggError("survivors and dropped participants must all have shared");
    }
    if (alive.size < roster.threshold) {
      throw new SecAggError(`only ${alive.size} survivors, fewer than the threshold ${roster.threshold}`);
    }
    this.revealed = true;
    const held = new Map(this.received);
    held.set(this.ownIndex, this.own);
    const answer = new Map<number, Uint8Array>();
    for (const j of alive) {
      const shares = held.get(j);
      if (shares !== undefined) answer.set(j, shareToBytes(shares[0]));
    }
    for (const j of gone) {
      const shares = held.get(j);
      if (shares !== undefined) answer.set(j, shareToBytes(shares[1]));
    }
    return answer;
  }
}
