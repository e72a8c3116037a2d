import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBlobHasher, POOL_HASHING_AVAILABLE, type HashingPlace } from './blob-hasher.js';

const sha256 = (...parts: Uint8Array[]) => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
};

describe('blob hashing', () => {
  it('hashes on the thread pool in this build (npm install built the native addon)', () => {
    expect(POOL_HASHING_AVAILABLE).toBe(true);
  });

  describe.each<HashingPlace>(['pool', 'inline'])('on the %s', (place) => {
    it('gives the SHA-256 of every chunk of every update, in order, views of larger buffers included', async () => {
      const backing = randomBytes(300_000);
      const batches: Uint8Array[][] = [
        [backing.subarray(7, 70_000), Buffer.alloc(0), backing.subarray(70_000, 70_001)],
        [new Uint8Array(backing.buffer, backing.byteOffset + 100_000, 150_000)],
        [randomBytes(1), randomBytes(65_536), backing.subarray(299_999)],
      ];
      const hasher = createBlobHasher(place);
      for (const batch of batches) await hasher.update(batch);
      expect(hasher.digest()).toBe(sha256(...batches.flat()));
    });

    it('gives the SHA-256 of nothing when nothing (or only empty chunks) was hashed', async () => {
      const untouched = createBlobHasher(place);
      expect(untouched.digest()).toBe(sha256());
      const empty = createBlobHasher(place);
      await empty.update([]);
      await empty.update([Buffer.alloc(0)]);
      expect(empty.digest()).toBe(sha256());
    });

    it('hashes 64 MiB in 1 MiB batches like node:crypto', async () => {
      const mib = randomBytes(1024 * 1024);
      const hasher = createBlobHasher(place);
      const expected = createHash('sha256');
      for (let i = 0; i < 64; i++) {
        const batch = [mib.subarray(0, 4096 * (i + 1)), mib.subarray(4096 * (i + 1))];
        await hasher.update(batch);
        for (const chunk of batch) expected.update(chunk);
      }
      expect(hasher.digest()).toBe(expected.digest('hex'));
    });

    it('takes no update and no second digest once the digest is taken', async () => {
      const hasher = createBlobHasher(place);
      await hasher.update([Buffer.from('abc')]);
      expect(hasher.digest()).toBe(sha256(Buffer.from('abc')));
      expect(() => hasher.digest()).toThrow();
      await expect(Promise.resolve().then(() => hasher.update([Buffer.from('d')]))).rejects.toThrow();
    });
  });

  describe('on the thread pool', () => {
    it('leaves the event loop free: it turns while a 64 MiB update is hashed', async () => {
      const hasher = createBlobHasher('pool');
      let turned = false;
      setImmediate(() => (turned = true));
      await hasher.update(Array.from({ length: 64 }, () => Buffer.alloc(1024 * 1024, 1)));
      expect(turned).toBe(true);
      // The same update on the event loop settles before the loop turns.
      const inline = createBlobHasher('inline');
      let inlineTurned = false;
      setImmediate(() => (inlineTurned = true));
      await inline.update([Buffer.alloc(1024 * 1024, 1)]);
      expect(inlineTurned).toBe(false);
    });

    it('refuses an update, or the digest, while an update runs, and finishes the running one correctly', async () => {
      const hasher = createBlobHasher('pool');
      const big = randomBytes(8 * 1024 * 1024);
      const running = hasher.update([big]);
      await expect(hasher.update([Buffer.from('x')])).rejects.toThrow('still running');
      expect(() => hasher.digest()).toThrow('still running');
      await running;
      expect(hasher.digest()).toBe(sha256(big));
    });

    it('refuses chunks that are not bytes, without hashing anything', async () => {
      const hasher = createBlobHasher('pool');
      for (const chunk of ['text', new Uint16Array(4)]) {
        const err = await hasher.update([chunk as unknown as Uint8Array]).catch((e: unknown) => e as Error);
        expect(err).toMatchObject({ name: 'TypeError', message: expect.stringContaining('must be a Uint8Array') });
      }
      await hasher.update([Buffer.from('ok')]);
      expect(hasher.digest()).toBe(sha256(Buffer.from('ok')));
    });

    describe('writing each batch to a file before hashing it (writeAndUpdate)', () => {
      let dir: string;
      beforeEach(() => {
        dir = mkdtempSync(join(tmpdir(), 'blob-hasher-'));
      });
      afterEach(() => rmSync(dir, { recursive: true, force: true }));

      it('stores every chunk at its position, views, empty chunks and more chunks than one pwritev takes included', async () => {
        const backing = randomBytes(400_000);
        const batches: Uint8Array[][] = [
          [backing.subarray(3, 1000), Buffer.alloc(0), new Uint8Array(backing.buffer, backing.byteOffset + 5000, 70_000)],
          // 300 chunks: pwritev takes 64 at a time, so the write goes on from where each call stopped
          Array.from({ length: 300 }, (_, i) => backing.subarray(i * 1000, i * 1000 + 1 + (i % 7) * 100)),
          [randomBytes(3 * 1024 * 1024)],
        ];
        const handle = await open(join(dir, 'spool'), 'wx+');
        try {
          const hasher = createBlobHasher('pool');
          let position = 0;
          for (const batch of batches) {
            await hasher.writeAndUpdate!(handle.fd, position, batch);
            position += batch.reduce((sum, c) => sum + c.byteLength, 0);
          }
          const expected = Buffer.concat(batches.flat());
          expect(readFileSync(join(dir, 'spool')).equals(expected)).toBe(true);
          expect(hasher.digest()).toBe(sha256(expected));
        } finally {
          await handle.close();
        }
      });

      it('rejects with the errno of a failed write, and hashes nothing of that batch', async () => {
        writeFileSync(join(dir, 'read-only'), 'x');
        const handle = await open(join(dir, 'read-only'), 'r');
        try {
          const hasher = createBlobHasher('pool');
          await hasher.update([Buffer.from('kept')]);
          const err = await hasher.writeAndUpdate!(handle.fd, 0, [Buffer.from('lost')]).catch((e: unknown) => e as NodeJS.ErrnoException);
          expect(err).toMatchObject({ code: 'EBADF', syscall: 'pwritev' });
          expect(hasher.digest()).toBe(sha256(Buffer.from('kept')));
        } finally {
          await handle.close();
        }
      });

      it('refuses a descriptor or a position that is not a non-negative integer', async () => {
        const hasher = createBlobHasher('pool');
        for (const [fd, position] of [
          [-1, 0],
          [3, -5],
        ]) {
          await expect(hasher.writeAndUpdate!(fd, position, [Buffer.from('x')])).rejects.toThrow('sha256Update(hasher, chunks, callback[, fd, position])');
        }
        await hasher.update([Buffer.from('ok')]);
        expect(hasher.digest()).toBe(sha256(Buffer.from('ok')));
      });

      it('is only offered where hashing runs on the thread pool', () => {
        expect(createBlobHasher('inline').writeAndUpdate).toBeUndefined();
      });
    });
  });
});
