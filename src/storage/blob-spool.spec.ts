import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
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

  describe('appendAll', () => {
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
