import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import type { StorageConfig } from '../config/config.js';
import { parseEnvironment } from '../config/environment.js';
import { MetricsService } from '../observability/metrics.service.js';
import { BlobNotFoundError } from '../storage/blob-store.js';
import { FilesystemBlobStoreDriver } from '../storage/filesystem-blob-store.driver.js';
import { BlobOffload, X_ACCEL_LOCATION } from './blob-offload.js';

describe('BlobOffload with the filesystem store', () => {
  let dir: string;
  let store: FilesystemBlobStoreDriver;
  let entry: CacheEntry;
  const bytes = randomBytes(10_000);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-offload-'));
    store = new FilesystemBlobStoreDriver(dir);
    const writer = await store.create();
    await writer.append(bytes);
    await writer.commit(digest, bytes.length);
    entry = { id: 7, digest, size: bytes.length, storageKey: digest } as CacheEntry;
  });

  afterEach(() => rm(dir, { recursive: true, force: true }));

  const offload = (env: Record<string, string>, metrics = new MetricsService()) =>
    new BlobOffload(parseEnvironment(env).storage as StorageConfig, store, metrics);

  it('leaves the bytes to the app when offload is off (the default)', async () => {
    expect(await offload({}).answer(entry, undefined)).toBeUndefined();
  });

  it('answers X-Accel-Redirect to the internal location with the blob headers and no body, counting the bytes as x-accel', async () => {
    const metrics = new MetricsService();
    const answer = await offload({ BLOB_OFFLOAD: 'x-accel' }, metrics).answer(entry, undefined);
    const hex = digest.slice('sha256:'.length);
    expect(answer).toEqual({
      status: 200,
      headers: {
        'docker-distribution-api-version': 'registry/2.0',
        'content-type': 'application/octet-stream',
        'docker-content-digest': digest,
        etag: `"${digest}"`,
        'x-accel-redirect': `${X_ACCEL_LOCATION}sha256/${hex.slice(0, 2)}/${hex}`,
        'content-length': '0',
      },
      body: Buffer.alloc(0),
    });
    await offload({ BLOB_OFFLOAD: 'x-accel' }, metrics).answer(entry, { start: 100, end: 199 });
    const served = await metrics.bytesServed.get();
    expect(served.values.map((v) => [v.labels.source, v.value])).toEqual([['x-accel', bytes.length + 100]]);
  });

  it('throws BlobNotFoundError for a vanished object (the caller turns the hit into a miss) and counts nothing', async () => {
    const metrics = new MetricsService();
    await store.delete(digest);
    await expect(offload({ BLOB_OFFLOAD: 'x-accel' }, metrics).answer(entry, undefined)).rejects.toBeInstanceOf(BlobNotFoundError);
    expect((await metrics.bytesServed.get()).values).toEqual([]);
  });
});
