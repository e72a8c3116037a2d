/**
 * Issue 7, acceptance 4: with GROUP_STORAGE_QUOTA=300MiB, pulling three 150 MiB images in turn (real
 * pulls: skopeo through the app from Debian's docker-registry) keeps the group under quota, evicts the
 * least recently downloaded image, and every pull succeeds; evicted content is pulled again on demand.
 *
 * The pull path enforces the quota after each new cache entry (StorageQuotaService.enforce, not awaited
 * by the pull); the test calls enforce() after each pull as well, to wait until it has acted (a call
 * while one runs joins it; one after it is a no-op).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DataSource } from 'typeorm';
import { StorageQuotaService } from '../src/lifecycle/storage-quota.service.js';
import { BLOB_STORE, type BlobStore } from '../src/storage/blob-store.js';
import { eventually } from './support/admin-api.js';
import { metricValue } from './support/cache-observation.js';
import { buildOciImage, imageBlobs, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { databaseTargets, startTestApp, type DatabaseTarget, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo');
const reason = canRun ? '' : ' (skipped: docker-registry or skopeo is not installed; bash .ci/install-packages.sh)';
const suite = canRun ? describe.each(databaseTargets()) : describe.skip.each(databaseTargets());

const KiB = 1024;
const MiB = 1024 * KiB;
const QUOTA = 300 * MiB;

suite(`storage quota: 300 MiB, three 150 MiB images pulled in turn (%s database)${reason}`, (database: DatabaseTarget) => {
  let app: TestApp;
  let upstream: UpstreamRegistry;
  let vr: VirtualRegistry;
  let db: DataSource;
  let blobs: BlobStore;
  let quota: StorageQuotaService;
  const images: ImageManifestFixture[] = [];
  const dirs: string[] = [];

  /** Distinct objects the group's live entries reference: what the quota counts. */
  const groupUsage = async (): Promise<number> => {
    const [{ bytes }] = (await db.query(
      `SELECT coalesce(sum(size), 0)::text AS bytes FROM (SELECT DISTINCT digest, size FROM cache_entries WHERE group_id = $1 AND status = 'default') d`,
      [vr.groupId],
    )) as { bytes: string }[];
    return Number(bytes);
  };

  const liveDigests = async (): Promise<Set<string>> =>
    new Set(
      ((await db.query(`SELECT DISTINCT digest FROM cache_entries WHERE group_id = $1 AND status = 'default'`, [vr.groupId])) as { digest: string }[]).map(
        (r) => r.digest,
      ),
    );

  const isCached = async (image: ImageManifestFixture): Promise<boolean> => {
    const live = await liveDigests();
    return [image.digest, ...imageBlobs(image).map((b) => b.digest)].every((d) => live.has(d));
  };

  /** Every object of the image has a live entry downloaded (or created) at or after `since`. */
  const downloadedSince = async (image: ImageManifestFixture, since: Date): Promise<boolean> => {
    const digests = [image.digest, ...imageBlobs(image).map((b) => b.digest)];
    const rows = (await db.query(
      `SELECT digest FROM cache_entries WHERE group_id = $1 AND status = 'default' AND digest = ANY($2::text[])
        GROUP BY digest HAVING max(downloaded_at) >= $3`,
      [vr.groupId, digests, since],
    )) as { digest: string }[];
    return rows.length === digests.length;
  };

  /** Digests of the image with no row at all (live or pending). */
  const withoutRows = async (image: ImageManifestFixture): Promise<string[]> => {
    const digests = [image.digest, ...imageBlobs(image).map((b) => b.digest)];
    const rows = (await db.query(`SELECT DISTINCT digest FROM cache_entries WHERE group_id = $1 AND digest = ANY($2::text[])`, [vr.groupId, digests])) as {
      digest: string;
    }[];
    return digests.filter((d) => !rows.some((r) => r.digest === d));
  };

  /**
   * A real client pull; returns after checking the big layer's bytes, then lets the quota act. An object
   * of this very image may be evicted while the pull runs (its config is fetched last, with the oldest
   * download): refilled while the destroy job deletes its object, the new row goes too (the documented
   * race of CacheDestructionService: the next pull fetches it again). Then the pull is made once more,
   * and must record everything.
   */
  const pull = async (index: number, again = true): Promise<void> => {
    const startedAt = new Date();
    const dir = mkdtempSync(join(tmpdir(), 'cvr-quota-'));
    dirs.push(dir);
    rmSync(dir, { recursive: true });
    await run(
      'skopeo',
      [
        'copy',
        '--src-tls-verify=false',
        '--src-creds',
        `${vr.pullUser.username}:${vr.pullUser.token}`,
        `docker://${vr.imagePrefix}/quota/image${index}:latest`,
        `dir:${dir}`,
      ],
      { timeout: 180_000, maxBuffer: 16 * MiB },
    );
    const image = images[index];
    expect(readFileSync(join(dir, 'manifest.json')).equals(image.manifest)).toBe(true);
    const layer = image.layers[image.layers.length - 1];
    expect(sha256Digest(readFileSync(join(dir, layer.digest.replace('sha256:', ''))))).toBe(layer.digest);
    rmSync(dir, { recursive: true, force: true });
    // The fill records its entry once the last byte is verified (just after the client has it), and
    // downloads are written in batches: wait until every object of the image shows this pull.
    const recorded = await eventually(() => downloadedSince(image, startedAt), 30_000).then(
      (): true => true,
      (err: Error) => err,
    );
    if (recorded !== true && again && (await withoutRows(image)).length > 0) {
      process.stdout.write(
        `quota: objects of image ${index} were evicted and destroyed during its pull (${(await withoutRows(image)).join(', ')}); pulling it again\n`,
      );
      return pull(index, false);
    }
    if (recorded !== true) {
      const rows = await db.query(`SELECT relative_path, digest, size, status, downloaded_at, created_at FROM cache_entries ORDER BY id`);
      throw new Error(`${recorded.message}: pull of image ${index} started at ${startedAt.toISOString()}; rows: ${JSON.stringify(rows)}`);
    }
    await quota.enforce(vr.groupId);
    // The same race after the check: the refilled row was recorded, then lost with the object the destroy
    // job deleted. The image just pulled is the newest and fits: the quota itself never evicts it.
    if (again && !(await isCached(image))) {
      const live = await liveDigests();
      const missing = [image.digest, ...imageBlobs(image).map((b) => b.digest)].filter((d) => !live.has(d));
      const rows = await db.query(`SELECT relative_path, status, downloaded_at, created_at FROM cache_entries WHERE digest = ANY($1::text[]) ORDER BY id`, [
        missing,
      ]);
      process.stdout.write(`quota: image ${index} lost ${missing.join(', ')} after its pull (rows: ${JSON.stringify(rows)}); pulling it again\n`);
      return pull(index, false);
    }
  };

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    for (let i = 0; i < 3; i++) {
      // 150 MiB each, everything included (layers, config, manifest).
      const image = await buildOciImage({ seed: `quota-${i}`, layerSize: 150 * MiB - 64 * KiB });
      const total = imageBlobs(image).reduce((sum, b) => sum + b.size, 0) + image.manifest.length;
      expect(total).toBeLessThanOrEqual(150 * MiB);
      expect(total).toBeGreaterThan(149 * MiB);
      await pushImage(upstream.url, `quota/image${i}`, 'latest', image);
      images.push(image);
    }
    app = await startTestApp({ GROUP_STORAGE_QUOTA: '300MiB' }, { database });
    db = app.app.get(DataSource);
    blobs = app.app.get<BlobStore>(BLOB_STORE);
    quota = app.app.get(StorageQuotaService);
    vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
  }, 300_000);

  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('keeps the group under quota, evicts the least recently downloaded image, and every pull succeeds', async () => {
    expect(quota.quotaBytes).toBe(QUOTA);
    const evictionsBefore = await metricValue(app, 'registry_cache_evictions_total');

    await pull(0);
    await pull(1);
    expect(await groupUsage()).toBeLessThanOrEqual(QUOTA);
    expect([await isCached(images[0]), await isCached(images[1])]).toEqual([true, true]);
    expect(await metricValue(app, 'registry_cache_evictions_total')).toBe(evictionsBefore);

    // Image 0 is pulled again (from the cache), so image 1 becomes the least recently downloaded.
    const warm = await upstream.mark();
    await pull(0);
    expect((await upstream.requests(warm)).filter((r) => r.path.includes('/blobs/'))).toEqual([]);

    const [{ n: image1Entries }] = (await db.query(
      `SELECT count(*)::int AS n FROM cache_entries WHERE group_id = $1 AND status = 'default' AND digest = ANY($2::text[])`,
      [vr.groupId, [images[1].digest, ...imageBlobs(images[1]).map((b) => b.digest)]],
    )) as { n: number }[];
    expect(image1Entries).toBeGreaterThanOrEqual(4); // manifest, config, two layers (and the manifest by tag)

    await pull(2);
    expect(await groupUsage()).toBeLessThanOrEqual(QUOTA);
    expect([await isCached(images[0]), await isCached(images[1]), await isCached(images[2])]).toEqual([true, false, true]);
    // Whole objects go, oldest download first, until the newest that remain fit: image 1's manifest and
    // layers at least (its small config, fetched last, may still fit).
    const live = await liveDigests();
    const image1Digests = [images[1].digest, ...imageBlobs(images[1]).map((b) => b.digest)];
    const evicted = image1Digests.filter((d) => !live.has(d));
    expect(evicted).toEqual(expect.arrayContaining([images[1].digest, ...images[1].layers.map((l) => l.digest)]));
    const [{ n: image1Left }] = (await db.query(
      `SELECT count(*)::int AS n FROM cache_entries WHERE group_id = $1 AND status = 'default' AND digest = ANY($2::text[])`,
      [vr.groupId, image1Digests],
    )) as { n: number }[];
    expect(await metricValue(app, 'registry_cache_evictions_total')).toBe(evictionsBefore + image1Entries - image1Left);
    // The destroy job the eviction enqueued removes the objects.
    await eventually(async () => (await Promise.all(evicted.map((d) => blobs.stat(d)))).every((s) => s === undefined), 30_000);
    await eventually(async () => Number((await db.query(`SELECT count(*)::int AS n FROM cache_entries WHERE status <> 'default'`))[0].n) === 0, 30_000);

    // The evicted image is pulled again from the upstream; now image 0 is the least recently downloaded.
    const cold = await upstream.mark();
    await pull(1);
    expect((await upstream.requests(cold)).some((r) => r.path.includes(images[1].layers[1].digest))).toBe(true);
    expect(await groupUsage()).toBeLessThanOrEqual(QUOTA);
    expect([await isCached(images[0]), await isCached(images[1]), await isCached(images[2])]).toEqual([false, true, true]);
  }, 600_000);
});
