import { describe, expect, it } from '@jest/globals';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBlobStoreContract } from './blob-store.contract.js';
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

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
