import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { HashingPlace } from './blob-hasher.js';
import { BlobSpool } from './blob-spool.js';
import { isSelfWriting } from './file-body.js';

/** A socket stand-in that copies what it is given (the sender may reuse its buffers) and is slow to drain. */
function collector(): { out: Writable; bytes: () => Buffer } {
  const received: Buffer[] = [];
  const out = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      received.push(Buffer.from(chunk));
      setImmediate(callback);
    },
  });
  return { out, bytes: () => Buffer.concat(received) };
}

describe('BlobSpool', () => {
  let dir: string;
  let spool: BlobSpool;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-spool-'));
    spool = await BlobSpool.create(join(dir, 'spool'));
  });

  afterEach(async () => {
    await spool.release();
    await rm(dir, { recursive: true, force: true });
  });

  describe('appendAll', () => {
    it.each<HashingPlace>(['pool', 'inline'])('hashing on the %s: stores each batch after the one before and hashes them all, in order', async (hashing) => {
      const hashed = await BlobSpool.create(join(dir, `spool-${hashing}`), { hashing });
      try {
        const batches = [[randomBytes(1000)], [randomBytes(300_000), Buffer.alloc(0), randomBytes(5)], Array.from({ length: 100 }, () => randomBytes(700))];
        for (const batch of batches) await hashed.appendAll(batch);
        const expected = Buffer.concat(batches.flat());
        expect(hashed.size).toBe(expected.length);
        expect(hashed.digest()).toBe(`sha256:${createHash('sha256').update(expected).digest('hex')}`);
        expect((await readFile(join(dir, `spool-${hashing}`))).equals(expected)).toBe(true);
      } finally {
        await hashed.release();
      }
    });

    it('keeps no reference to the chunks once stored: a reader sends the stored bytes even if the caller reuses its buffers', async () => {
      const chunks = [randomBytes(100_000), randomBytes(50_000)];
      const expected = Buffer.concat(chunks);
      await spool.appendAll(chunks);
      for (const chunk of chunks) chunk.fill(0); // the network buffers are gone (or reused) once stored
      spool.seal();
      const { out, bytes } = collector();
      await (spool.openTailReader(0) as unknown as { writeTo(out: Writable): Promise<void> }).writeTo(out);
      expect(bytes().equals(expected)).toBe(true);
      expect(spool.digest()).toBe(`sha256:${createHash('sha256').update(expected).digest('hex')}`);
    });
  });

  describe('storedPieces (appendAll with keep)', () => {
    it('gives pieces of the batch stored last, sharing its memory, and nothing for other bytes', async () => {
      const first = [randomBytes(1000)];
      const last = [randomBytes(300), randomBytes(500), randomBytes(200)];
      await spool.appendAll(first, { keep: true });
      await spool.appendAll(last, { keep: true });
      const whole = Buffer.concat(last);
      const pieces = spool.storedPieces(1000, 1000)!;
      expect(pieces.map((p) => p.buffer)).toEqual(last.map((c) => c.buffer));
      expect(Buffer.concat(pieces).equals(whole)).toBe(true);
      expect(Buffer.concat(spool.storedPieces(1250, 400)!).equals(whole.subarray(250, 650))).toBe(true);
      expect(Buffer.concat(spool.storedPieces(1800, 200)!).equals(whole.subarray(800))).toBe(true);
      expect(spool.storedPieces(999, 10)).toBeUndefined(); // starts in the batch before
      expect(spool.storedPieces(1900, 101)).toBeUndefined(); // not stored yet
      expect(spool.storedPieces(1000, 0)).toBeUndefined();
    });

    it('keeps nothing of a batch appended without keep, nor once the writer lets go of the spool', async () => {
      await spool.appendAll([randomBytes(100)], { keep: true });
      await spool.appendAll([randomBytes(100)]);
      expect(spool.storedPieces(100, 100)).toBeUndefined();
      await spool.appendAll([randomBytes(100)], { keep: true });
      expect(spool.storedPieces(200, 100)).toBeDefined();
      spool.seal();
      await spool.release();
      expect(spool.storedPieces(200, 100)).toBeUndefined();
    });

    it('a reader that has caught up sends the batch just stored without reading it back; one behind reads the file', async () => {
      const batches = Array.from({ length: 6 }, () => [randomBytes(200_000), randomBytes(65_536)]);
      await spool.appendAll(batches[0], { keep: true });
      await spool.appendAll(batches[1], { keep: true });
      const reads: number[] = [];
      const readInto = spool.readInto.bind(spool);
      spool.readInto = (buffer, position, length) => {
        reads.push(position);
        return readInto(buffer, position, length);
      };
      const handed = new Set<ArrayBufferLike>(batches.flat().map((c) => c.buffer));
      let sentAsStored = 0;
      const received: Buffer[] = [];
      const out = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          if (handed.has(chunk.buffer)) sentAsStored += 1;
          received.push(Buffer.from(chunk));
          setImmediate(callback);
        },
      });
      const sent = (spool.openTailReader(0) as unknown as { writeTo(out: Writable): Promise<void> }).writeTo(out);
      const caughtUp = async () => {
        for (let i = 0; i < 500 && received.reduce((sum, c) => sum + c.length, 0) < spool.size; i++) await new Promise((resolve) => setTimeout(resolve, 2));
      };
      for (const batch of batches.slice(2)) {
        await caughtUp(); // the reader has sent everything stored and waits for more
        await spool.appendAll(batch, { keep: true });
      }
      await caughtUp();
      spool.seal();
      await sent;
      expect(Buffer.concat(received).equals(Buffer.concat(batches.flat()))).toBe(true);
      expect(sentAsStored).toBe(2 * 4); // every batch stored while it followed went out as it was
      expect(reads[0]).toBe(0); // the two stored before it started were read back from the file
      expect(Math.max(...reads)).toBeLessThan(2 * 265_536);
    });
  });

  describe('tail reader writeTo', () => {
    it('sends every byte in order while the spool grows (what was stored before it started, then what is stored as it follows)', async () => {
      const batches = Array.from({ length: 12 }, (_, i) => [randomBytes(300_000 + i), randomBytes(70_000)]);
      const expected = Buffer.concat(batches.flat());
      for (const batch of batches.slice(0, 3)) await spool.appendAll(batch);
      const reader = spool.openTailReader(0);
      expect(isSelfWriting(reader)).toBe(true);
      const { out, bytes } = collector();
      const sent = (reader as unknown as { writeTo(out: Writable): Promise<void> }).writeTo(out);
      for (const batch of batches.slice(3)) {
        await spool.appendAll(batch);
        await new Promise((resolve) => setImmediate(resolve));
      }
      spool.seal();
      await sent;
      expect(bytes().equals(expected)).toBe(true);
    });

    it('holds back the last bytes until the spool is sealed (verified)', async () => {
      const data = randomBytes(200_000);
      await spool.appendAll([data]);
      const reader = spool.openTailReader(0, { end: data.length - 1 });
      const { out, bytes } = collector();
      let finished = false;
      const sent = (reader as unknown as { writeTo(out: Writable): Promise<void> }).writeTo(out).then(() => (finished = true));
      await new Promise((resolve) => setTimeout(resolve, 50)); // time passing: nothing may complete meanwhile
      expect(finished).toBe(false);
      expect(bytes().length).toBe(0);
      spool.seal();
      await sent;
      expect(bytes().equals(data)).toBe(true);
    });
  });
});
