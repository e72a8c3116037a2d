import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
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

  describe('recentBytes', () => {
    it('slices the batches stored last, across chunk and batch boundaries, and nothing older or beyond', async () => {
      const [a, b, c, d, e] = [3, 5, 4, 2, 6].map((n) => randomBytes(n));
      await spool.appendAll([a, b]); // bytes 0..7, dropped once two later batches are stored
      await spool.appendAll([c, d]); // 8..13
      await spool.appendAll([e]); // 14..19
      const all = Buffer.concat([a, b, c, d, e]);

      expect(spool.recentBytes(0, 2)).toBeUndefined();
      expect(spool.recentBytes(7, 2)).toBeUndefined();
      expect(spool.recentBytes(18, 3)).toBeUndefined();
      for (const [position, length] of [
        [8, 4],
        [9, 5],
        [11, 6],
        [8, 12],
        [19, 1],
      ]) {
        expect(Buffer.concat(spool.recentBytes(position, length)!)).toEqual(all.subarray(position, position + length));
      }
    });

    it('holds nothing once the spool is aborted', async () => {
      await spool.appendAll([randomBytes(10)]);
      spool.abort(new Error('cancelled'));
      expect(spool.recentBytes(0, 10)).toBeUndefined();
    });
  });

  describe('tail reader writeTo', () => {
    it('sends every byte in order while the spool grows, from memory and from the file alike', async () => {
      const batches = Array.from({ length: 12 }, (_, i) => [randomBytes(300_000 + i), randomBytes(70_000)]);
      const expected = Buffer.concat(batches.flat());
      // Three batches are stored before the reader starts: it reads them back from the file, then keeps up from memory.
      for (const batch of batches.slice(0, 3)) await spool.appendAll(batch);
      const fileReads = jest.spyOn(spool, 'readInto');
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
      // What was stored before it started came from the file; the nine batches stored while it kept up did not.
      expect(fileReads.mock.calls.length).toBeGreaterThan(0);
      expect(fileReads.mock.calls.length).toBeLessThan(4);
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
