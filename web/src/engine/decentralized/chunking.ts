/**
 * DISCO's chunk framing on WebRTC data channels (as `disco.client.decentralized.chunking` and
 * the 2.1.1 client): every peer message is cut into chunks of at most 16 KiB, each starting
 * with `uint16 BE message id | uint8 chunk index [| uint8 chunk count, first chunk only]`, so a
 * message has at most 255 chunks. The reassembler is strict: duplicate chunks, an index beyond
 * the announced count or too much buffered data are errors and the partial message is dropped.
 */

export const DISCO_CHUNK_SIZE = 16 * 1024;
const FIRST_HEADER_SIZE = 4;
const HEADER_SIZE = 3;
const MAX_CHUNKS = 0xff;
export const MESSAGE_ID_LIMIT = 0x10000;

export class ChunkError extends Error {
  override name = "ChunkError";
}

/** Largest message that fits in 255 chunks of `chunkSize` bytes. */
export function maxMessageSize(chunkSize: number = DISCO_CHUNK_SIZE): number {
  return chunkSize - FIRST_HEADER_SIZE + (MAX_CHUNKS - 1) * (chunkSize - HEADER_SIZE);
}

/** Cut `payload` into chunks of at most `chunkSize` bytes (headers included). */
export function chunkMessage(
  messageID: number,
  payload: Uint8Array,
  chunkSize: number = DISCO_CHUNK_SIZE,
): Uint8Array<ArrayBuffer>[] {
  const first = chunkSize - FIRST_HEADER_SIZE;
  const perChunk = chunkSize - HEADER_SIZE;
  const total = payload.length <= first ? 1 : 1 + Math.ceil((payload.length - first) / perChunk);
  if (total > MAX_CHUNKS) {
    throw new ChunkError(
      `message of ${payload.length} bytes needs ${total} chunks, at most ${MAX_CHUNKS} allowed ` +
        `(${maxMessageSize(chunkSize)} bytes)`,
    );
  }
  const head = payload.subarray(0, first);
  const chunk0 = new Uint8Array(FIRST_HEADER_SIZE + head.length);
  chunk0[0] = messageID >> 8;
  chunk0[1] = messageID & 0xff;
  chunk0[2] = 0;
  chunk0[3] = total;
  chunk0.set(head, FIRST_HEADER_SIZE);
  const chunks = [chunk0];
  for (let index = 1; index < total; index++) {
    const start = first + (index - 1) * perChunk;
    const body = payload.subarray(start, start + perChunk);
    const chunk = new Uint8Array(HEADER_SIZE + body.length);
    chunk[0] = messageID >> 8;
    chunk[1] = messageID & 0xff;
    chunk[2] = index;
    chunk.set(body, HEADER_SIZE);
    chunks.push(chunk);
  }
  return chunks;
}

interface Partial {
  total: number | null;
  parts: Map<number, Uint8Array>;
  size: number;
}

/** Rebuilds messages from the chunks of one data channel. */
export class Reassembler {
  private pending = new Map<number, Partial>();
  private buffered = 0;

  constructor(
    private readonly maxBytes: number = maxMessageSize(256 * 1024),
    private readonly maxPending = 4,
  ) {}

  /** Take one chunk; the message it completes, if any. Throws ChunkError. */
  feed(chunk: Uint8Array): Uint8Array | null {
    if (chunk.length < HEADER_SIZE) {
      throw new ChunkError(`chunk of ${chunk.length} bytes is shorter than a header`);
    }
    const id = ((chunk[0] ?? 0) << 8) | (chunk[1] ?? 0);
    const index = chunk[2] ?? 0;
    let partial = this.pending.get(id);
    if (partial === undefined) {
      if (this.pending.size >= this.maxPending) {
        throw new ChunkError(`more than ${this.maxPending} messages are incomplete at once`);
      }
      partial = { total: null, parts: new Map(), size: 0 };
      this.pending.set(id, partial);
    }
    let body: Uint8Array;
    try {
      body = this.accept(partial, id, index, chunk);
    } catch (error) {
      this.forget(id);
      throw error;
    }
    partial.parts.set(index, body);
    partial.size += body.length;
    this.buffered += body.length;
    if (partial.total === null || partial.parts.size < partial.total) return null;
    this.forget(id);
    const message = new Uint8Array(partial.size);
    let offset = 0;
    for (let i = 0; i < partial.total; i++) {
      const part = partial.parts.get(i) ?? new Uint8Array();
      message.set(part, offset);
      offset += part.length;
    }
    return message;
  }

  private forget(id: number): void {
    const partial = this.pending.get(id);
    if (partial === undefined) return;
    this.pending.delete(id);
    this.buffered -= partial.size;
  }

  private accept(partial: Partial, id: number, index: number, chunk: Uint8Array): Uint8Array {
    if (partial.parts.has(index)) throw new ChunkError(`chunk ${id}:${index} received twice`);
    let body: Uint8Array;
    if (index === 0) {
      if (chunk.length < FIRST_HEADER_SIZE) throw new ChunkError(`first chunk of ${id} has no count`);
      const total = chunk[3] ?? 0;
      if (total === 0) throw new ChunkError(`message ${id} announces 0 chunks`);
      for (const i of partial.parts.keys()) {
        if (i >= total) throw new ChunkError(`message ${id} announces ${total} chunks but chunk ${i} arrived`);
      }
      partial.total = total;
      body = chunk.subarray(FIRST_HEADER_SIZE);
    } else {
      if (partial.total !== null && index >= partial.total) {
        throw new ChunkError(`chunk ${id}:${index} is beyond the ${partial.total} chunks announced`);
      }
      body = chunk.subarray(HEADER_SIZE);
    }
    if (this.buffered + body.length > this.maxBytes) {
      throw new ChunkError(`message ${id}: incomplete messages exceed ${this.maxBytes} bytes`);
    }
    return body.slice();
  }

  reset(): void {
    this.pending.clear();
    this.buffered = 0;
  }
}
