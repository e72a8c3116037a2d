/**
 * Cross-replica coalescing (issue 11), with two replicas of the app in this process on one Postgres,
 * one Redis and one storage directory: concurrent misses for one blob through both replicas make one
 * upstream download; the replica that lost the fill lease streams the other's growing object over its
 * fill route, from the first bytes on. (test/topology.e2e-spec.ts does the same with the real built
 * processes on S3, and kills the leading replica.)
 */
import { accessLog } from './support/access-log.js';
import { streamDownload, type StreamedDownload } from './support/blob-download.js';
import { liveCacheEntryRows, metricValue, waitForLiveRow } from './support/cache-observation.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { pushLargeBlob } from './support/large-blob.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, pullToken } from './support/virtual-registry.js';

const canRun = Boolean(realServices.postgresUrl && realServices.redisUrl) && realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: needs DATABASE_URL, REDIS_URL and docker-registry)';

const MiB = 1024 * 1024;

function outcome(d: StreamedDownload): string {
  return `${d.status} ${d.complete ? 'complete' : 'incomplete'} ${d.received}/${d.declaredLength ?? '?'} ${d.digest}`;
}

suite(`caching across replicas: one upstream download per blob, whichever replica clients reach${reason}`, () => {
  let first: TestApp;
  let second: TestApp;
  let upstream: UpstreamRegistry;
  let faulty: FaultyUpstream;

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    faulty = await startFaultyUpstream(upstream.url);
    first = await startTestApp({ REDIS_URL: realServices.redisUrl }, { database: 'postgres' });
    second = await startTestApp({ REDIS_URL: realServices.redisUrl }, { replicaOf: first });
  }, 120_000);

  afterAll(async () => {
    await second?.close();
    await first?.close();
    await faulty?.close();
    await upstream?.close();
  });

  it('8 simultaneous cold GETs split across two replicas: one upstream GET, 8 correct copies, every first byte before the fill ended', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/split', 40 * MiB, 'replicas-split');
    // a slow upstream (16 MiB/s): the fill takes about 2.5 s, so every client joins while it runs
    faulty.set({ kind: 'throttle', bytesPerSecond: 16 * MiB }, { method: 'GET', path: /\/blobs\// });
    const vr = await createVirtualRegistry(first, [{ url: faulty.url }]);
    const token = await pullToken(first, vr, 'team/split');
    const path = `/v2/virtual_registries/containers/${vr.registryId}/team/split/blobs/${blob.digest}`;
    const rowSuffix = `/team/split/blobs/${blob.digest}`;
    const mark = await upstream.mark();
    const coalescedBefore =
      (await metricValue(first, 'registry_cache_requests_total', { result: 'coalesced', kind: 'blob' })) +
      (await metricValue(second, 'registry_cache_requests_total', { result: 'coalesced', kind: 'blob' }));

    const rowsAtFirstByte: Promise<number>[] = [];
    const downloads = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        streamDownload((i % 2 === 0 ? first : second).url, path, {
          headers: { authorization: `Bearer ${token}` },
          onFirstByte: () => {
            rowsAtFirstByte.push(liveCacheEntryRows(first, rowSuffix, vr.upstreamIds).then((rows) => rows.length));
          },
        }),
      ),
    );

    const expected = `200 complete ${blob.size}/${blob.size} ${blob.digest}`;
    expect(downloads.map(outcome)).toEqual(Array.from({ length: 8 }, () => expected));
    expect(accessLog.blobDownloads(await upstream.requests(mark), blob.digest)).toHaveLength(1);
    expect(faulty.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${blob.digest}`))).toHaveLength(1);
    // every client, on either replica, had bytes while the fill was still running (no cache row yet)
    expect(await Promise.all(rowsAtFirstByte)).toEqual(Array.from({ length: 8 }, () => 0));
    const coalescedAfter =
      (await metricValue(first, 'registry_cache_requests_total', { result: 'coalesced', kind: 'blob' })) +
      (await metricValue(second, 'registry_cache_requests_total', { result: 'coalesced', kind: 'blob' }));
    expect(coalescedAfter - coalescedBefore).toBe(7);
    expect(await waitForLiveRow(first, rowSuffix, 10_000, vr.upstreamIds)).toBeDefined();
  }, 90_000);

  it('a corrupted blob through the leader fails every client on both replicas and caches nothing', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/flipped', 8 * MiB, 'replicas-flipped');
    faulty.set({ kind: 'corrupt' }, { method: 'GET', path: /\/blobs\// });
    const vr = await createVirtualRegistry(first, [{ url: faulty.url }]);
    const token = await pullToken(first, vr, 'team/flipped');
    const path = `/v2/virtual_registries/containers/${vr.registryId}/team/flipped/blobs/${blob.digest}`;
    const downloads = await Promise.all(
      Array.from({ length: 4 }, (_, i) => streamDownload((i % 2 === 0 ? first : second).url, path, { headers: { authorization: `Bearer ${token}` } })),
    );
    // a client may have been told 503, or got a cut 200: never a whole 200 body
    for (const d of downloads) expect({ wholeBody: d.status === 200 && d.complete }).toEqual({ wholeBody: false });
    expect(await liveCacheEntryRows(first, `/team/flipped/blobs/${blob.digest}`, vr.upstreamIds)).toEqual([]);
  }, 60_000);
});
