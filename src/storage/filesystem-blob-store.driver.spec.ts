import { describe, expect, it } from '@jest/globals';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { Writable } from 'node:stream';
import { runBlobStoreContract } from './blob-store.contract.js';
import { BlobNotFoundError } from './blob-store.js';
import type { SelfWritingBody } from './file-body.js';
import { FilesystemBlobStoreDriver } from './filesystem-blob-store.driver.js';

runBlobStoreContract('filesystem', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'blob-store-fs-'));
  const root = join(dir, 'blobs');
  return {
    store: new FilesystemBlobStoreDriver(root),
    async plantOrphanTemporary() {
      const id = randomUUID();
      await mkdir(join(root, '_uploads'), { recursive: true });
      await writeFile(join(root, '_uploads', id), 'the first bytes of a write that never finished');
      return id;
    },
    readOffloaded: (target) => {
      if (target.kind !== 'file') throw new Error(`the filesystem driver offloads to files, not ${target.kind}`);
      return readFile(join(root, target.path));
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('FilesystemBlobStoreDriver layout', () => {
  it('writes into <root>/_uploads/<uuid> and commits by renaming to <root>/sha256/ab/<hex>', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blob-store-fs-'));
    try {
      const store = new FilesystemBlobStoreDriver(dir);
      const bytes = randomBytes(5000);
      const hex = createHash('sha256').update(bytes).digest('hex');
      const writer = await store.create();
      await writer.append(bytes);

      const [temporary] = await readdir(join(dir, '_uploads'));
      expect(await readFile(join(dir, '_uploads', temporary))).toEqual(bytes);
      expect((await collect(store.listTemporary())).map((t) => t.id)).toEqual([temporary]);

      await writer.commit(`sha256:${hex}`);
      expect(await readdir(join(dir, '_uploads'))).toEqual([]);
      expect(await readFile(join(dir, 'sha256', hex.slice(0, 2), hex))).toEqual(bytes);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('makes the uploads directory again when it was removed since the last write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blob-store-fs-'));
    try {
      const store = new FilesystemBlobStoreDriver(join(dir, 'blobs')); // nothing exists yet
      for (let i = 0; i < 2; i++) {
        const bytes = randomBytes(1000 + i);
        const writer = await store.create();
        await writer.append(bytes);
        const { digest } = await writer.commit();
        expect(await readFile(join(dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7)))).toEqual(bytes);
        await rm(join(dir, 'blobs', '_uploads'), { recursive: true }); // an operator cleaned up
      }
      await rm(join(dir, 'blobs'), { recursive: true });
      await expect(store.create().then((w) => w.cancel())).resolves.toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails the readiness check when the root cannot be created or written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blob-store-fs-'));
    try {
      await writeFile(join(dir, 'a-file'), '');
      await expect(new FilesystemBlobStoreDriver(join(dir, 'a-file', 'blobs')).check()).rejects.toThrow(/ENOTDIR/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('ignores stray files in the tree when listing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blob-store-fs-'));
    try {
      await mkdir(join(dir, 'sha256', 'ab'), { recursive: true });
      await mkdir(join(dir, '_uploads'), { recursive: true });
      await writeFile(join(dir, 'sha256', 'ab', 'not-a-digest'), '');
      await writeFile(join(dir, 'sha256', 'ab', 'cd'.repeat(32)), '');
      await writeFile(join(dir, '_uploads', '.nfs0001'), '');
      const store = new FilesystemBlobStoreDriver(dir);
      expect(await collect(store.list())).toEqual([]);
      expect(await collect(store.listTemporary())).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FilesystemBlobStoreDriver open files', () => {
  const openFiles = () => readdirSync('/proc/self/fd').length;

  it('serves GETs of one object from one descriptor, and closes it once the object is deleted, also after a reader gone mid-way', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blob-store-fs-'));
    const store = new FilesystemBlobStoreDriver(dir);
    try {
      const bytes = randomBytes(3 * 1024 * 1024 + 5);
      const writer = await store.create();
      await writer.append(bytes);
      const { digest } = await writer.commit();
      const before = openFiles();

      // Two whole reads (stream and writeTo) and a range: one descriptor, kept open between them.
      expect(Buffer.concat(await collect((await store.createReadStream(digest)) as AsyncIterable<Buffer>)).equals(bytes)).toBe(true);
      const sent: Buffer[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          sent.push(Buffer.from(chunk));
          callback();
        },
      });
      await ((await store.createReadStream(digest)) as unknown as SelfWritingBody).writeTo(sink);
      expect(Buffer.concat(sent).equals(bytes)).toBe(true);
      const range = Buffer.concat(await collect((await store.createReadStream(digest, { start: 10, end: 20 })) as AsyncIterable<Buffer>));
      expect(range.equals(bytes.subarray(10, 21))).toBe(true);
      expect(openFiles()).toBe(before + 1);

      // A client that goes away after the first MiB: the body fails and lets go of the file.
      const gone = new Writable({
        write(_chunk, _encoding, callback) {
          callback();
          this.destroy();
        },
      });
      await expect(((await store.createReadStream(digest)) as unknown as SelfWritingBody).writeTo(gone)).rejects.toThrow(/closed the connection/);
      await new Promise((resolve) => setTimeout(resolve, 50)); // reads still on the thread pool come back

      await store.delete(digest);
      for (let i = 0; i < 100 && openFiles() > before; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(openFiles()).toBe(before);
      await expect(store.createReadStream(digest)).rejects.toBeInstanceOf(BlobNotFoundError);
    } finally {
      store.onApplicationShutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
