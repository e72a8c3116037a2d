/**
 * The BlobStore contract: one suite, run by every driver's spec (filesystem-blob-store.driver.spec.ts,
 * s3-blob-store.driver.spec.ts), after distribution's registry/storage/driver/testsuites.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BlobNotFoundError,
  BlobRangeNotSatisfiableError,
  BlobStore,
  BlobWriteCancelledError,
  BlobWriterClosedError,
  DigestMismatchError,
  InvalidDigestError,
  InvalidTemporaryIdError,
  blobContentPath,
  type OffloadTarget,
} from './blob-store.js';
import { streamBlobThrough } from '../../test/support/streamed-blob.js';
import { isSelfWriting, type SelfWritingBody } from './file-body.js';

export interface BlobStoreContractSubject {
  store: BlobStore;
  /** Leaves a temporary object behind, as a crashed write would, and returns its id. */
  plantOrphanTemporary(): Promise<string>;
  /**
   * Reads an offload target the way its reader does, with no credential of the store: the front proxy
   * reads a file below the store's root, a client GETs a URL. Throws with the status when it is refused.
   */
  readOffloaded(target: OffloadTarget): Promise<Buffer>;
  dispose(): Promise<void>;
}

const MiB = 1024 ** 2;
/** More than two of the S3 driver's 8 MiB parts, and not a whole number of chunks. */
const STREAMED_WRITE_BYTES = 20 * MiB + 12345;

export function runBlobStoreContract(name: string, factory: () => Promise<BlobStoreContractSubject>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let subject: BlobStoreContractSubject;
    let store: BlobStore;

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
    });

    afterEach(async () => {
      await subject.dispose();
    });

    it('commits a blob under its digest, then stats, reads and lists it', async () => {
      const bytes = randomBytes(300 * 1024 + 7);
      const writer = await store.create();
      await writer.append(bytes.subarray(0, 1000));
      await writer.append(bytes.subarray(1000));
      expect(writer.bytesWritten).toBe(bytes.length);

      expect(await writer.commit(digestOf(bytes), bytes.length)).toEqual({ digest: digestOf(bytes), size: bytes.length });

      expect(await store.stat(digestOf(bytes))).toEqual({ size: bytes.length });
      expect(fingerprint(await readBytes(await store.createReadStream(digestOf(bytes))))).toEqual(fingerprint(bytes));
      const listed = await collect(store.list());
      expect(listed.map(({ digest, size }) => ({ digest, size }))).toEqual([{ digest: digestOf(bytes), size: bytes.length }]);
      expect(Math.abs(Date.now() - listed[0].modifiedAt.getTime())).toBeLessThan(60_000);
      expect(await collect(store.listTemporary())).toEqual([]);
    });

    it('keys a commit without an expected digest by the computed digest (tag manifests)', async () => {
      const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] }));
      const writer = await store.create();
      await writer.append(manifest);
      expect(await writer.commit()).toEqual({ digest: digestOf(manifest), size: manifest.length });
      expect(fingerprint(await readBytes(await store.createReadStream(digestOf(manifest))))).toEqual(fingerprint(manifest));
    });

    it('stores an empty blob', async () => {
      const empty = Buffer.alloc(0);
      const writer = await store.create();
      expect(await writer.commit(digestOf(empty), 0)).toEqual({ digest: digestOf(empty), size: 0 });
      expect(await store.stat(digestOf(empty))).toEqual({ size: 0 });
      expect(fingerprint(await readBytes(await store.createReadStream(digestOf(empty))))).toEqual(fingerprint(empty));
    });

    it('serves ranged reads with the exact bytes (both ends inclusive)', async () => {
      const bytes = randomBytes(256 * 1024 + 13);
      const digest = await writeBlob(store, bytes);
      const last = bytes.length - 1;
      const cases: Array<[number, number | undefined, Buffer]> = [
        [0, 0, bytes.subarray(0, 1)],
        [0, 99, bytes.subarray(0, 100)],
        [1000, 70_000, bytes.subarray(1000, 70_001)],
        [12_345, 12_345, bytes.subarray(12_345, 12_346)],
        [last - 99, last, bytes.subarray(last - 99)],
        [last, last, bytes.subarray(last)],
        [200_000, undefined, bytes.subarray(200_000)],
        [last - 9, last + 1000, bytes.subarray(last - 9)],
      ];
      for (const [start, end, expected] of cases) {
        const served = await readBytes(await store.createReadStream(digest, { start, end }));
        expect({ start, end, ...fingerprint(served) }).toEqual({ start, end, ...fingerprint(expected) });
      }
    });

    it('refuses a range that starts past the end, and malformed ranges', async () => {
      const bytes = randomBytes(1000);
      const digest = await writeBlob(store, bytes);
      await expect(store.createReadStream(digest, { start: 1000, end: 2000 })).rejects.toBeInstanceOf(BlobRangeNotSatisfiableError);
      await expect(store.createReadStream(digest, { start: 10, end: 5 })).rejects.toBeInstanceOf(RangeError);
      await expect(store.createReadStream(digest, { start: -1, end: 5 })).rejects.toBeInstanceOf(RangeError);
    });

    it('reports an absent blob: stat undefined, read BlobNotFoundError, delete idempotent', async () => {
      const absent = digestOf(Buffer.from('never stored'));
      expect(await store.stat(absent)).toBeUndefined();
      await expect(store.createReadStream(absent)).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store.createReadStream(absent, { start: 0, end: 10 })).rejects.toBeInstanceOf(BlobNotFoundError);
      await store.delete(absent);
      await store.delete(absent);
    });

    it('refuses malformed digests', async () => {
      for (const bad of ['sha256:abc', 'md5:0123', `sha256:${'A'.repeat(64)}`, '../../etc/passwd', '']) {
        await expect(store.stat(bad)).rejects.toBeInstanceOf(InvalidDigestError);
        await expect(store.createReadStream(bad)).rejects.toBeInstanceOf(InvalidDigestError);
        await expect(store.delete(bad)).rejects.toBeInstanceOf(InvalidDigestError);
      }
      const writer = await store.create();
      await writer.append(Buffer.from('x'));
      await expect(writer.commit('sha256:nope')).rejects.toBeInstanceOf(InvalidDigestError);
      expect(await collect(store.list())).toEqual([]);
      expect(await collect(store.listTemporary())).toEqual([]);
    });

    it('stores nothing on a digest mismatch, errors the commit and its tail readers', async () => {
      const bytes = randomBytes(64 * 1024);
      const claimed = digestOf(Buffer.from('what the upstream said it was'));
      const writer = await store.create();
      const follower = readBytes(writer.openTailReader());
      await writer.append(bytes);

      const failure = await writer.commit(claimed, bytes.length).catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(DigestMismatchError);
      expect(failure).toMatchObject({ expectedDigest: claimed, actualDigest: digestOf(bytes), actualSize: bytes.length });
      await expect(follower).rejects.toBeInstanceOf(DigestMismatchError);

      expect(await store.stat(claimed)).toBeUndefined();
      expect(await store.stat(digestOf(bytes))).toBeUndefined();
      expect(await collect(store.list())).toEqual([]);
      expect(await collect(store.listTemporary())).toEqual([]);
      await expect(writer.append(Buffer.from('more'))).rejects.toBeInstanceOf(BlobWriterClosedError);
      await expect(writer.commit(claimed)).rejects.toBeInstanceOf(DigestMismatchError);
      await writer.cancel();
    });

    it('stores nothing on a size mismatch', async () => {
      const bytes = randomBytes(4096);
      const writer = await store.create();
      await writer.append(bytes);
      await expect(writer.commit(digestOf(bytes), bytes.length + 1)).rejects.toBeInstanceOf(DigestMismatchError);
      expect(await store.stat(digestOf(bytes))).toBeUndefined();
      expect(await collect(store.listTemporary())).toEqual([]);
    });

    it('leaves nothing after cancel, which is safe to call twice, and errors tail readers', async () => {
      const writer = await store.create();
      const follower = readBytes(writer.openTailReader());
      await writer.append(randomBytes(100 * 1024));
      await Promise.all([writer.cancel(), writer.cancel()]);
      await writer.cancel();

      await expect(follower).rejects.toBeInstanceOf(BlobWriteCancelledError);
      await expect(readBytes(writer.openTailReader())).rejects.toBeInstanceOf(BlobWriteCancelledError);
      await expect(writer.append(Buffer.from('late'))).rejects.toBeInstanceOf(BlobWriterClosedError);
      await expect(writer.commit()).rejects.toBeInstanceOf(BlobWriterClosedError);
      expect(await collect(store.list())).toEqual([]);
      expect(await collect(store.listTemporary())).toEqual([]);
    });

    it('treats cancel after commit as a no-op, and a second commit as the first one', async () => {
      const bytes = randomBytes(2048);
      const writer = await store.create();
      await writer.append(bytes);
      const first = await writer.commit(digestOf(bytes));
      await writer.cancel();
      await writer.cancel();
      expect(await writer.commit(digestOf(bytes))).toEqual(first);
      expect(fingerprint(await readBytes(await store.createReadStream(digestOf(bytes))))).toEqual(fingerprint(bytes));
    });

    it('ends two concurrent writers of one digest with one object, both commits succeeding', async () => {
      const bytes = randomBytes(512 * 1024);
      const [a, b] = await Promise.all([store.create(), store.create()]);
      for (let offset = 0; offset < bytes.length; offset += 64 * 1024) {
        await Promise.all([a.append(bytes.subarray(offset, offset + 64 * 1024)), b.append(bytes.subarray(offset, offset + 64 * 1024))]);
      }
      const results = await Promise.all([a.commit(digestOf(bytes), bytes.length), b.commit(digestOf(bytes), bytes.length)]);
      expect(results).toEqual([
        { digest: digestOf(bytes), size: bytes.length },
        { digest: digestOf(bytes), size: bytes.length },
      ]);
      expect((await collect(store.list())).map((blob) => blob.digest)).toEqual([digestOf(bytes)]);
      expect(await collect(store.listTemporary())).toEqual([]);
      expect(fingerprint(await readBytes(await store.createReadStream(digestOf(bytes))))).toEqual(fingerprint(bytes));
    });

    it('keeps a write invisible until commit, even after several MiB', async () => {
      const bytes = randomBytes(20 * MiB);
      const writer = await store.create();
      for (let offset = 0; offset < bytes.length; offset += MiB) await writer.append(bytes.subarray(offset, offset + MiB));
      expect(await store.stat(digestOf(bytes))).toBeUndefined();
      expect(await collect(store.list())).toEqual([]);
      await writer.commit(digestOf(bytes));
      expect(await store.stat(digestOf(bytes))).toEqual({ size: bytes.length });
    });

    it('feeds a tail reader opened before any write every byte, as it is written', async () => {
      const chunks = Array.from({ length: 24 }, () => randomBytes(64 * 1024));
      const source = createHash('sha256');
      const writer = await store.create();
      const follower = follow(writer.openTailReader());

      for (const [index, chunk] of chunks.entries()) {
        await writer.append(chunk);
        source.update(chunk);
        if (index === 11) await waitUntil(() => follower.received === 12 * 64 * 1024);
      }
      await waitUntil(() => follower.received === writer.bytesWritten);
      // Everything is written and read, but the follower waits for the verdict of the commit: time passes on
      // purpose (a fixed 50 ms, no event to wait for) to show that it does not end before it.
      await letTimePass(50);
      expect(follower.ended).toBe(false);
      const receivedBeforeCommit = follower.received;

      const committed = await writer.commit(`sha256:${source.copy().digest('hex')}`);
      await follower.done;
      expect(receivedBeforeCommit).toBe(24 * 64 * 1024);
      expect(follower.digest()).toBe(committed.digest);
      expect(follower.received).toBe(committed.size);
    });

    it('serves a committed object, whole and a range, the same whether it is streamed or writes itself to a socket', async () => {
      const bytes = randomBytes(2 * MiB + 12345);
      const digest = await writeBlob(store, bytes);
      for (const range of [undefined, { start: 0, end: 0 }, { start: 1000, end: MiB + 17 }, { start: bytes.length - 3, end: bytes.length + 100 }]) {
        const expected = range ? bytes.subarray(range.start, Math.min(range.end, bytes.length - 1) + 1) : bytes;
        expect(fingerprint(await readBytes(await store.createReadStream(digest, range)))).toEqual(fingerprint(expected));
        const body = await store.createReadStream(digest, range);
        const served = isSelfWriting(body) ? await writeToSink(body) : await readBytes(body);
        expect(fingerprint(served)).toEqual(fingerprint(expected));
      }
    });

    it('writes a running write to a socket as it grows, holding back the completing chunk until the commit verified it', async () => {
      const bytes = randomBytes(3 * MiB + 5);
      const writer = await store.create();
      const reader = writer.openTailReader(0, { end: bytes.length - 1 });
      expect(isSelfWriting(reader)).toBe(true);
      const sink = new Sink();
      const served = (reader as unknown as SelfWritingBody).writeTo(sink);
      await writer.append(bytes.subarray(0, 2 * MiB));
      await waitUntil(() => sink.received === 2 * MiB);
      await writer.append(bytes.subarray(2 * MiB));
      // Everything is stored; time passes on purpose (a fixed 50 ms) to show the last chunk waits for the verdict.
      await letTimePass(50);
      expect(sink.received).toBeLessThan(bytes.length);
      await writer.commit(digestOf(bytes), bytes.length);
      await served;
      expect(fingerprint(sink.bytes())).toEqual(fingerprint(bytes));
      expect(sink.ended).toBe(true);
    });

    it('fails a self-writing tail reader when the write fails verification, never completing the body', async () => {
      const bytes = randomBytes(MiB + 3);
      const writer = await store.create();
      const reader = writer.openTailReader(0, { end: bytes.length - 1 }) as unknown as SelfWritingBody;
      const sink = new Sink();
      const served = reader.writeTo(sink).then(
        () => 'completed',
        (err: unknown) => err,
      );
      await writer.append(bytes);
      await expect(writer.commit(digestOf(randomBytes(10)))).rejects.toBeInstanceOf(DigestMismatchError);
      expect(await served).toBeInstanceOf(DigestMismatchError);
      expect(sink.received).toBeLessThan(bytes.length);
      expect(sink.ended).toBe(false);
    });

    it('stops a range of a running write at its end, after `withholdUntil`', async () => {
      const bytes = randomBytes(2 * MiB);
      const writer = await store.create();
      let release!: () => void;
      const until = new Promise<void>((resolve) => (release = resolve));
      const reader = writer.openTailReader(100, { end: 200_099, withholdUntil: until });
      const read = readBytes(reader);
      await writer.append(bytes);
      await writer.commit(digestOf(bytes));
      release();
      expect(fingerprint(await read)).toEqual(fingerprint(bytes.subarray(100, 200_100)));
    });

    it('lets go of a self-writing reader whose client hangs up', async () => {
      const bytes = randomBytes(4 * MiB);
      const digest = await writeBlob(store, bytes);
      const body = await store.createReadStream(digest);
      if (!isSelfWriting(body)) return expect(fingerprint(await readBytes(body))).toEqual(fingerprint(bytes));
      const sink = new Sink({ stallAfter: MiB });
      const served = body.writeTo(sink).then(
        () => 'completed',
        (err: unknown) => err,
      );
      await waitUntil(() => sink.received >= MiB);
      sink.destroy();
      expect(await served).toBeInstanceOf(Error);
      expect(sink.received).toBeLessThan(bytes.length);
    });

    it('feeds a tail reader from an offset, and one opened after commit from the committed object', async () => {
      const bytes = randomBytes(200 * 1024);
      const writer = await store.create();
      await writer.append(bytes.subarray(0, 100 * 1024));
      const fromMiddle = readBytes(writer.openTailReader(50_000));
      const beyondWritten = readBytes(writer.openTailReader(150_000));
      await writer.append(bytes.subarray(100 * 1024));
      await writer.commit(digestOf(bytes));

      expect(fingerprint(await fromMiddle)).toEqual(fingerprint(bytes.subarray(50_000)));
      expect(fingerprint(await beyondWritten)).toEqual(fingerprint(bytes.subarray(150_000)));
      expect(fingerprint(await readBytes(writer.openTailReader(1234)))).toEqual(fingerprint(bytes.subarray(1234)));
      expect(fingerprint(await readBytes(writer.openTailReader(bytes.length)))).toEqual(fingerprint(Buffer.alloc(0)));
    });

    it('hands the first bytes piped through writer.stream to tail readers before a whole batch has arrived', async () => {
      const writer = await store.create();
      const reader = writer.openTailReader();
      reader.on('error', () => undefined); // the cancel below ends it with an error
      const firstChunk = new Promise<Buffer>((resolve) => reader.once('data', resolve));
      writer.stream.write(randomBytes(100_000)); // under a MiB; the source stays open
      const stalled = new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), 5000).unref());
      const first = await Promise.race([firstChunk, stalled]);
      expect(first).not.toBe('stalled');
      expect((first as Buffer).length).toBeGreaterThan(0);
      reader.destroy();
      writer.stream.destroy();
      await writer.cancel();
    });

    it('accepts a piped body through writer.stream, and cancels when the pipe fails', async () => {
      const bytes = randomBytes(3 * MiB + 5);
      const writer = await store.create();
      await pipeline(Readable.from(chunksOf(bytes, 100_000)), writer.stream);
      expect(await writer.commit(digestOf(bytes))).toEqual({ digest: digestOf(bytes), size: bytes.length });

      const broken = await store.create();
      const follower = readBytes(broken.openTailReader());
      const failingBody = Readable.from(
        (async function* () {
          yield bytes.subarray(0, 100_000);
          throw new Error('upstream connection reset');
        })(),
      );
      await expect(pipeline(failingBody, broken.stream)).rejects.toThrow('upstream connection reset');
      await expect(follower).rejects.toBeInstanceOf(BlobWriteCancelledError);
      await broken.cancel();
      expect((await collect(store.list())).map((blob) => blob.digest)).toEqual([digestOf(bytes)]);
      expect(await collect(store.listTemporary())).toEqual([]);
    });

    it('takes a body chunk by chunk through writer.sink: waits are honoured, tail readers follow, the rest is stored at end', async () => {
      const bytes = randomBytes(3 * MiB + 5);
      const writer = await store.create();
      const follower = readBytes(writer.openTailReader());
      let waits = 0;
      for (const chunk of chunksOf(bytes, 64 * 1024)) {
        const waiting = writer.sink.write(chunk);
        if (waiting) {
          waits++;
          await waiting;
        }
      }
      await writer.sink.end();
      expect(waits).toBeGreaterThan(0); // a whole batch (1 MiB) makes the next chunk wait for the one before
      expect(writer.bytesWritten).toBe(bytes.length);
      expect(await writer.commit(digestOf(bytes))).toEqual({ digest: digestOf(bytes), size: bytes.length });
      expect(fingerprint(await follower)).toEqual(fingerprint(bytes));

      const cancelled = await store.create();
      void cancelled.sink.write(randomBytes(100_000));
      await cancelled.cancel();
      // a batch after the cancel is refused (the fill aborts its upstream request)
      await expect(Promise.resolve(cancelled.sink.write(randomBytes(2 * MiB))).then(() => cancelled.sink.end())).rejects.toBeInstanceOf(BlobWriterClosedError);
      expect(await collect(store.listTemporary())).toEqual([]);
    });

    it('deletes one blob (idempotently) and lists the rest', async () => {
      const blobs = [randomBytes(10), randomBytes(2000), randomBytes(70_000)];
      for (const bytes of blobs) await writeBlob(store, bytes);
      await store.delete(digestOf(blobs[1]));
      await store.delete(digestOf(blobs[1]));

      expect(await store.stat(digestOf(blobs[1]))).toBeUndefined();
      await expect(store.createReadStream(digestOf(blobs[1]))).rejects.toBeInstanceOf(BlobNotFoundError);
      const listed = (await collect(store.list())).map(({ digest, size }) => ({ digest, size }));
      expect(listed.sort((x, y) => x.digest.localeCompare(y.digest))).toEqual(
        [blobs[0], blobs[2]].map((bytes) => ({ digest: digestOf(bytes), size: bytes.length })).sort((x, y) => x.digest.localeCompare(y.digest)),
      );
    });

    it('names where a committed object can be read without the app (offload target), after checking it is there', async () => {
      const bytes = randomBytes(200 * 1024 + 3);
      const digest = await writeBlob(store, bytes);
      const target = await store.offloadTarget(digest, { expiresInSeconds: 60 });
      expect(target.size).toBe(bytes.length);
      expect(fingerprint(await subject.readOffloaded(target))).toEqual(fingerprint(bytes));
      if (target.kind === 'file') {
        expect(target.path).toBe(blobContentPath(digest));
      } else {
        expect(Math.abs(target.expiresAt.getTime() - (Date.now() + 60_000))).toBeLessThan(5_000);
        expect(new URL(target.url).searchParams.get('X-Amz-Expires')).toBe('60');
      }

      await store.delete(digest);
      await expect(store.offloadTarget(digest, { expiresInSeconds: 60 })).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store.offloadTarget(digestOf(randomBytes(8)), { expiresInSeconds: 60 })).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store.offloadTarget('sha256:../../etc/passwd', { expiresInSeconds: 60 })).rejects.toBeInstanceOf(InvalidDigestError);
    });

    it('lists and deletes orphaned temporary objects', async () => {
      const id = await subject.plantOrphanTemporary();
      const temporaries = await collect(store.listTemporary());
      expect(temporaries.map((temporary) => temporary.id)).toEqual([id]);
      expect(Math.abs(Date.now() - temporaries[0].modifiedAt.getTime())).toBeLessThan(60_000);

      await store.deleteTemporary(id);
      await store.deleteTemporary(id);
      expect(await collect(store.listTemporary())).toEqual([]);
      await expect(store.deleteTemporary('../sha256')).rejects.toBeInstanceOf(InvalidTemporaryIdError);
    });

    it('answers the readiness check', async () => {
      await expect(store.check()).resolves.toBeUndefined();
    });

    it('streams a write through writer.stream and reads back the same bytes, across several S3 parts', async () => {
      // Bounded memory for 1 GiB is measured in a process of its own: test/blob-store-memory.e2e-spec.ts.
      const result = await streamBlobThrough(store, STREAMED_WRITE_BYTES);
      expect(result.sent.size).toBe(STREAMED_WRITE_BYTES);
      expect(result.committed).toEqual(result.sent);
      expect(result.readBack).toEqual(result.sent);
    });
  });
}

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function writeBlob(store: BlobStore, bytes: Buffer): Promise<string> {
  const writer = await store.create();
  await writer.append(bytes);
  return (await writer.commit(digestOf(bytes), bytes.length)).digest;
}

/** Collects a small test body. */
async function readBytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Length and digest: compact in a failure message, unlike a Buffer diff. */
function fingerprint(bytes: Uint8Array): { length: number; digest: string } {
  return { length: bytes.length, digest: digestOf(bytes) };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

/** Hashes a tail reader as it goes, counting what it has received so far. */
function follow(reader: Readable) {
  const hash = createHash('sha256');
  const state = {
    received: 0,
    ended: false,
    done: new Promise<void>((resolve, reject) => {
      reader.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        state.received += chunk.length;
      });
      reader.on('end', () => {
        state.ended = true;
        resolve();
      });
      reader.on('error', reject);
    }),
    digest: () => `sha256:${hash.digest('hex')}`,
  };
  return state;
}

/** Polls `condition` (every 5 ms) while the store's background work runs, failing after `timeoutMs`. */
async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets time pass where a test shows that something does *not* happen (there is no event to wait for). */
function letTimePass(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A socket stand-in: collects what is written, acknowledging each write a tick later (or never, after `stallAfter` bytes). */
class Sink extends Writable {
  received = 0;
  ended = false;
  private readonly chunks: Buffer[] = [];

  constructor(private readonly options: { stallAfter?: number } = {}) {
    super({ highWaterMark: 16 * 1024 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk)); // the writer reuses its buffers once acknowledged
    this.received += chunk.length;
    if (this.options.stallAfter !== undefined && this.received >= this.options.stallAfter) return;
    setImmediate(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ended = true;
    callback();
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

async function writeToSink(body: SelfWritingBody): Promise<Buffer> {
  const sink = new Sink();
  await body.writeTo(sink);
  return sink.bytes();
}
