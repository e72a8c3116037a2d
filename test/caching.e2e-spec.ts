/**
 * Issue 6 (caching), end to end against real upstream registries and real clients:
 * 1-2. concurrent cold pulls share one verified upstream download per blob, and followers stream the
 *      growing fill (they get bytes before it completes);
 * 3.   a corrupted upstream blob is never cached, fails the pull and is counted;
 * 4.   a client that hangs up does not lose the fill; HEAD on an uncached blob gets it cached by the job;
 * 6.   bytes cached for group A are not served to group B's registry whose upstream lacks the digest.
 * Issue 16: a client's GET of one layer has the next layer of the manifest read ahead (BLOB_READ_AHEAD).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { accessLog } from './support/access-log.js';
import { eventually } from './support/admin-api.js';
import { streamDownload, type StreamedDownload } from './support/blob-download.js';
import { cacheEntryRows, liveCacheEntryRows, metricValue, waitForLiveRow } from './support/cache-observation.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildDockerImage, buildImage, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { pushLargeBlob } from './support/large-blob.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, pullToken, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry or skopeo is not installed; bash .ci/install-packages.sh)';

const MiB = 1024 * 1024;

async function skopeoCopy(vr: VirtualRegistry, ref: string, dir: string): Promise<void> {
  await run(
    'skopeo',
    ['copy', '--src-tls-verify=false', '--src-creds', `${vr.pullUser.username}:${vr.pullUser.token}`, `docker://${vr.imagePrefix}/${ref}`, `dir:${dir}`],
    { timeout: 120_000, maxBuffer: 16 * MiB },
  );
}

function blobPath(vr: VirtualRegistry, name: string, digest: string): string {
  return `/v2/virtual_registries/containers/${vr.registryId}/${name}/blobs/${digest}`;
}

/** What a download looked like, in one comparable line (for readable assertion failures). */
function outcome(d: StreamedDownload): string {
  return `${d.status} ${d.complete ? 'complete' : 'incomplete'} ${d.received}/${d.declaredLength ?? '?'} ${d.digest}`;
}

suite(`caching: one verified download per miss, shared by concurrent clients${reason}`, () => {
  let app: TestApp;
  let upstream: UpstreamRegistry;
  let other: UpstreamRegistry;
  let faulty: FaultyUpstream;
  let big: ImageManifestFixture;
  let corrupt: ImageManifestFixture;
  let shared: ImageManifestFixture;
  let othersImage: ImageManifestFixture;
  let layered: ImageManifestFixture;
  let sized: ImageManifestFixture;
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'cvr-caching-'));
    dirs.push(d);
    rmSync(d, { recursive: true });
    return d;
  };

  beforeAll(async () => {
    [upstream, other] = await Promise.all([startUpstreamRegistry(), startUpstreamRegistry()]);
    faulty = await startFaultyUpstream(upstream.url);
    big = await buildImage({ seed: 'caching-200mib', layerSizes: [40 * MiB, 40 * MiB, 40 * MiB, 40 * MiB, 40 * MiB] });
    corrupt = await buildImage({ seed: 'caching-corrupt', layerSizes: [16 * 1024, 3 * MiB] });
    shared = await buildDockerImage({ seed: 'caching-group-a' });
    othersImage = await buildDockerImage({ seed: 'caching-group-b' });
    layered = await buildImage({ seed: 'caching-read-ahead', layerSizes: [64 * 1024, 3 * MiB, 2 * MiB] });
    sized = await buildImage({ seed: 'caching-read-ahead-sizes', layerSizes: [64 * 1024, 6 * MiB, 64 * 1024] });
    await pushImage(upstream.url, 'team/big', '1.0', big);
    await pushImage(upstream.url, 'team/corrupt', '1.0', corrupt);
    await pushImage(upstream.url, 'shared/app', '1.0', shared);
    await pushImage(upstream.url, 'team/layered', '1.0', layered);
    await pushImage(upstream.url, 'team/sized', '1.0', sized);
    // the other upstream has the same repository, with other content: it lacks group A's blobs
    await pushImage(other.url, 'shared/app', '1.0', othersImage);
    app = await startTestApp();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await faulty?.close();
    await Promise.all([upstream?.close(), other?.close()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  afterEach(() => faulty?.forward());

  it('8 concurrent cold skopeo pulls of a 200 MiB image: one upstream GET per blob in total, 8 identical correct copies, then fully cached', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const mark = await upstream.mark();
    const copies = Array.from({ length: 8 }, () => tempDir());
    await Promise.all(copies.map((dir) => skopeoCopy(vr, 'team/big:1.0', dir)));

    const blobs = [big.config, ...big.layers];
    const downloads = await upstream.requests(mark);

    // all 8 copies are complete, correct and identical
    const reference = readdirSync(copies[0]).sort();
    for (const dir of copies) {
      expect(readdirSync(dir).sort()).toEqual(reference);
      expect(readFileSync(join(dir, 'manifest.json')).equals(big.manifest)).toBe(true);
      for (const blob of blobs) {
        expect([dir, blob.digest, sha256Digest(readFileSync(join(dir, blob.digest.replace(/^sha256:/, ''))))]).toEqual([dir, blob.digest, blob.digest]);
      }
    }
    for (const d of copies) rmSync(d, { recursive: true, force: true });

    // every blob is cached: a ninth pull downloads nothing from the upstream
    for (const blob of blobs) {
      expect([blob.digest, (await waitForLiveRow(app, `/team/big/blobs/${blob.digest}`, 10_000, vr.upstreamIds)) !== undefined]).toEqual([blob.digest, true]);
    }
    const warm = await upstream.mark();
    const dir = tempDir();
    await skopeoCopy(vr, 'team/big:1.0', dir);
    expect(accessLog.blobDownloads(await upstream.requests(warm))).toEqual([]);
    rmSync(dir, { recursive: true, force: true });

    // and the 8 cold pulls together downloaded each blob exactly once
    expect(blobs.map((b) => [b.digest, accessLog.blobDownloads(downloads, b.digest).length])).toEqual(blobs.map((b) => [b.digest, 1]));
  }, 180_000);

  it('8 simultaneous cold GETs of one blob (upstream 500 ms away) share one upstream download and all get the same, correct bytes', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/burst', 24 * MiB, 'caching-burst');
    // a distant upstream: every blob GET is answered half a second late, so all 8 misses overlap for sure
    faulty.set({ kind: 'delay', ms: 500 }, { method: 'GET', path: /\/blobs\// });
    const vr = await createVirtualRegistry(app, [{ url: faulty.url }]);
    const token = await pullToken(app, vr, 'team/burst');
    const mark = await upstream.mark();
    const results = await Promise.all(
      Array.from({ length: 8 }, () => streamDownload(app.url, blobPath(vr, 'team/burst', blob.digest), { headers: { authorization: `Bearer ${token}` } })),
    );
    const expected = `200 complete ${blob.size}/${blob.size} ${blob.digest}`;
    expect(results.map(outcome)).toEqual(Array.from({ length: 8 }, () => expected));
    const upstreamGets = accessLog.blobDownloads(await upstream.requests(mark), blob.digest).length;
    expect({ clients: 8, upstreamGets }).toEqual({ clients: 8, upstreamGets: 1 });
  }, 60_000);

  it('followers stream the growing fill: their first bytes arrive before the fill completes (no cache row yet), and they end with the same bytes', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/follow', 40 * MiB, 'caching-follow');
    // a slow upstream (16 MiB/s): the fill takes about 2.5 s
    faulty.set({ kind: 'throttle', bytesPerSecond: 16 * MiB }, { method: 'GET', path: /\/blobs\// });
    const vr = await createVirtualRegistry(app, [{ url: faulty.url }]);
    const token = await pullToken(app, vr, 'team/follow');
    const path = blobPath(vr, 'team/follow', blob.digest);
    const headers = { authorization: `Bearer ${token}` };
    const rowSuffix = `/team/follow/blobs/${blob.digest}`;

    const followers: Promise<{ download: StreamedDownload; rowsAtFirstByte: Promise<number> }>[] = [];
    const follow = async () => {
      let rowsAtFirstByte: Promise<number> = Promise.resolve(-1);
      const download = await streamDownload(app.url, path, {
        headers,
        onFirstByte: () => {
          rowsAtFirstByte = liveCacheEntryRows(app, rowSuffix, vr.upstreamIds).then((rows) => rows.length);
        },
      });
      return { download, rowsAtFirstByte };
    };
    // the leader's fill is under way: three followers join, once the leader has its first byte, 5 MiB and 10 MiB
    const joinAt = [1, 5 * MiB, 10 * MiB];
    const leader = streamDownload(app.url, path, {
      headers,
      onProgress: (received) => {
        while (joinAt.length > 0 && received >= joinAt[0]) {
          joinAt.shift();
          followers.push(follow());
        }
      },
    });
    const led = await leader;
    const joined = await Promise.all(followers);
    expect(outcome(led)).toBe(`200 complete ${blob.size}/${blob.size} ${blob.digest}`);
    expect(joined).toHaveLength(3);
    for (const { download, rowsAtFirstByte } of joined) {
      expect(outcome(download)).toBe(`200 complete ${blob.size}/${blob.size} ${blob.digest}`);
      expect({
        firstByteBeforeLeaderFinished: download.firstByteAt! < led.endedAt,
        cacheRowsWhenFirstByteArrived: await rowsAtFirstByte,
      }).toEqual({ firstByteBeforeLeaderFinished: true, cacheRowsWhenFirstByteArrived: 0 });
    }
    expect(faulty.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${blob.digest}`))).toHaveLength(1);
    expect(await waitForLiveRow(app, rowSuffix, 10_000, vr.upstreamIds)).toBeDefined();
  }, 60_000);

  it('a corrupted upstream blob (one byte flipped): the pull fails, nothing is cached, the mismatch is counted', async () => {
    const layer = corrupt.layers[1];
    const vr = await createVirtualRegistry(app, [{ url: faulty.url }]);
    const token = await pullToken(app, vr, 'team/corrupt');
    const before = await metricValue(app, 'registry_digest_mismatches_total');
    faulty.set({ kind: 'corrupt' }, { method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`) });

    const download = await streamDownload(app.url, blobPath(vr, 'team/corrupt', layer.digest), { headers: { authorization: `Bearer ${token}` } });
    // the client never holds a complete body: either an error status, or a body cut short / failed
    const gotWholeBody = download.status === 200 && download.complete && download.received === layer.size;
    expect({ outcome: outcome(download), gotWholeBody }).toEqual({ outcome: outcome(download), gotWholeBody: false });
    expect(faulty.requests.some((r) => r.handling === 'corrupt' && r.path.endsWith(layer.digest))).toBe(true);

    await expect(skopeoCopy(vr, 'team/corrupt:1.0', tempDir())).rejects.toThrow();

    // any background fill has settled: none in flight
    await eventually(async () => (await metricValue(app, 'registry_inflight_fills')) === 0);
    expect(await cacheEntryRows(app, `/team/corrupt/blobs/${layer.digest}`)).toEqual([]);
    expect(await metricValue(app, 'registry_digest_mismatches_total')).toBeGreaterThan(before);

    // once the upstream serves the right bytes, the blob is pulled and cached normally
    faulty.forward();
    const healed = await streamDownload(app.url, blobPath(vr, 'team/corrupt', layer.digest), { headers: { authorization: `Bearer ${token}` } });
    expect(outcome(healed)).toBe(`200 complete ${layer.size}/${layer.size} ${layer.digest}`);
    expect(await waitForLiveRow(app, `/team/corrupt/blobs/${layer.digest}`, 10_000, vr.upstreamIds)).toBeDefined();
  }, 60_000);

  it('a client that hangs up after 1 MiB of a 100 MiB blob: the blob is cached anyway, and then served from the cache', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/disconnect', 100 * MiB, 'caching-disconnect');
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/disconnect');
    const mark = await upstream.mark();
    const partial = await streamDownload(app.url, blobPath(vr, 'team/disconnect', blob.digest), {
      headers: { authorization: `Bearer ${token}` },
      abortAfterBytes: MiB,
    });
    expect(partial.status).toBe(200);
    expect(partial.complete).toBe(false);
    expect(partial.received).toBeLessThan(blob.size);

    const row = await waitForLiveRow(app, `/team/disconnect/blobs/${blob.digest}`, 30_000, vr.upstreamIds);
    expect(row && { digest: row.digest, size: row.size }).toEqual({ digest: blob.digest, size: blob.size });
    const fetches = accessLog.blobDownloads(await upstream.requests(mark), blob.digest).length;
    expect(fetches).toBeGreaterThanOrEqual(1);
    expect(fetches).toBeLessThanOrEqual(2); // kept going, or handed to the job once

    const warm = await upstream.mark();
    const full = await streamDownload(app.url, blobPath(vr, 'team/disconnect', blob.digest), { headers: { authorization: `Bearer ${token}` } });
    expect(outcome(full)).toBe(`200 complete ${blob.size}/${blob.size} ${blob.digest}`);
    expect(accessLog.blobDownloads(await upstream.requests(warm))).toEqual([]);
  }, 90_000);

  it('HEAD on an uncached blob answers from the upstream and gets the blob cached by the fill job', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/head-only', 6 * MiB, 'caching-head');
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const mark = await upstream.mark();
    const head = await registryFetch(app, vr, 'team/head-only', `blobs/${blob.digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(blob.size));
    expect(head.headers.get('docker-content-digest')).toBe(blob.digest);

    const row = await waitForLiveRow(app, `/team/head-only/blobs/${blob.digest}`, 30_000, vr.upstreamIds);
    expect(row && { digest: row.digest, size: row.size }).toEqual({ digest: blob.digest, size: blob.size });
    const warm = await upstream.mark();
    const got = await registryFetch(app, vr, 'team/head-only', `blobs/${blob.digest}`);
    expect(got.status).toBe(200);
    expect(sha256Digest(Buffer.from(await got.arrayBuffer()))).toBe(blob.digest);
    expect(accessLog.blobDownloads(await upstream.requests(warm))).toEqual([]);
    expect(accessLog.blobDownloads(await upstream.requests(mark), blob.digest)).toHaveLength(1); // the job's
  }, 60_000);

  it("reads an image's next layer ahead of a client that asks for one blob at a time, once per layer, then its config, nothing past it", async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const mark = await upstream.mark();
    const [first, second, third] = layered.layers;
    const row = (digest: string, timeoutMs: number) => waitForLiveRow(app, `/team/layered/blobs/${digest}`, timeoutMs, vr.upstreamIds);
    const filledAhead = await metricValue(app, 'registry_blob_read_aheads_total', { outcome: 'filled' });

    // Before the manifest has passed through, a layer's GET reads nothing ahead.
    const early = await registryFetch(app, vr, 'team/layered', `blobs/${first.digest}`);
    expect(sha256Digest(Buffer.from(await early.arrayBuffer()))).toBe(first.digest);
    expect(await row(first.digest, 10_000)).toBeDefined();
    expect(await row(second.digest, 1_000)).toBeUndefined();

    const manifest = await registryFetch(app, vr, 'team/layered', 'manifests/1.0');
    expect(manifest.status).toBe(200);
    await manifest.arrayBuffer();
    // The first layer (a hit now) is asked for: the second is filled before any client asks for it.
    const hit = await registryFetch(app, vr, 'team/layered', `blobs/${first.digest}`);
    expect(sha256Digest(Buffer.from(await hit.arrayBuffer()))).toBe(first.digest);
    expect(await row(second.digest, 30_000)).toBeDefined();
    expect(accessLog.blobDownloads(await upstream.requests(mark), second.digest)).toHaveLength(1);

    // The client's GET of the second layer is a hit; it has the third read ahead in turn.
    const next = await registryFetch(app, vr, 'team/layered', `blobs/${second.digest}`);
    expect(sha256Digest(Buffer.from(await next.arrayBuffer()))).toBe(second.digest);
    expect(await row(third.digest, 30_000)).toBeDefined();
    const last = await registryFetch(app, vr, 'team/layered', `blobs/${third.digest}`);
    expect(sha256Digest(Buffer.from(await last.arrayBuffer()))).toBe(third.digest);

    // After the last layer, the config (which skopeo, podman and CRI-O ask for last) is read ahead.
    expect(await row(layered.config.digest, 30_000)).toBeDefined();
    const config = await registryFetch(app, vr, 'team/layered', `blobs/${layered.config.digest}`);
    expect(sha256Digest(Buffer.from(await config.arrayBuffer()))).toBe(layered.config.digest);

    // Each blob came from the upstream once.
    await new Promise((r) => setTimeout(r, 500));
    const downloads = await upstream.requests(mark);
    for (const blob of [...layered.layers, layered.config])
      expect([blob.digest, accessLog.blobDownloads(downloads, blob.digest).length]).toEqual([blob.digest, 1]);
    // The second and third layers and the config were read ahead (and counted so); the first was asked for.
    const filled = async () => (await metricValue(app, 'registry_blob_read_aheads_total', { outcome: 'filled' })) - filledAhead;
    await eventually(async () => (await filled()) >= 3).catch(() => undefined); // counted as each fill ends
    expect(await filled()).toBe(3);
  });

  // Postgres lets the test hold the cache entries' table: meanwhile no fill can end (record its entry).
  (process.env.DATABASE_URL ? it : it.skip)(
    'reads a small next layer ahead as soon as a client asks for the one before it, a large one once that one is all there',
    async () => {
      const pgApp = await startTestApp({}, { database: 'postgres' });
      const pg = await import('pg');
      const db = new pg.default.Client({ connectionString: pgApp.shared.databaseUrl });
      await db.connect();
      try {
        const vr = await createVirtualRegistry(pgApp, [{ url: upstream.url }]);
        const [first, large, last] = sized.layers;
        const manifest = await registryFetch(pgApp, vr, 'team/sized', 'manifests/1.0');
        expect(manifest.status).toBe(200);
        await manifest.arrayBuffer();
        const mark = await upstream.mark();
        const downloads = async (digest: string) => accessLog.blobDownloads(await upstream.requests(mark), digest).length;

        await db.query('BEGIN');
        await db.query('LOCK TABLE cache_entries IN EXCLUSIVE MODE');
        // The client has the first layer, whose fill cannot end: the 6 MiB layer after it is not read ahead.
        const small = await registryFetch(pgApp, vr, 'team/sized', `blobs/${first.digest}`);
        expect(sha256Digest(Buffer.from(await small.arrayBuffer()))).toBe(first.digest);
        await new Promise((r) => setTimeout(r, 1_500));
        expect(await downloads(large.digest)).toBe(0);
        // The client asks for it: the 64 KiB layer after it is read ahead at once, though no fill has ended.
        const asked = await registryFetch(pgApp, vr, 'team/sized', `blobs/${large.digest}`);
        expect(sha256Digest(Buffer.from(await asked.arrayBuffer()))).toBe(large.digest);
        await eventually(async () => (await downloads(last.digest)) === 1, 15_000);

        await db.query('ROLLBACK');
        for (const blob of sized.layers) {
          expect(await waitForLiveRow(pgApp, `/team/sized/blobs/${blob.digest}`, 15_000, vr.upstreamIds)).toBeDefined();
          expect([blob.digest, await downloads(blob.digest)]).toEqual([blob.digest, 1]);
        }
      } finally {
        await db.query('ROLLBACK').catch(() => undefined);
        await db.end();
        await pgApp.close();
      }
    },
    60_000,
  );

  it("group B's registry, whose upstream lacks a blob group A has cached, gets 404 for it, never A's bytes", async () => {
    const vrA = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const vrB = await createVirtualRegistry(app, [{ url: other.url }]);
    expect(vrB.groupId).not.toBe(vrA.groupId);
    const secret = shared.layers[1];
    // group A pulls (and so caches) the image
    for (const path of ['manifests/1.0', `manifests/${shared.digest}`, ...[shared.config, ...shared.layers].map((b) => `blobs/${b.digest}`)]) {
      const res = await registryFetch(app, vrA, 'shared/app', path);
      expect([path, res.status]).toEqual([path, 200]);
      await res.arrayBuffer();
    }
    expect(await waitForLiveRow(app, `/shared/app/blobs/${secret.digest}`, 10_000, vrA.upstreamIds)).toBeDefined();

    for (const method of ['GET', 'HEAD']) {
      const blob = await registryFetch(app, vrB, 'shared/app', `blobs/${secret.digest}`, { method });
      const body = Buffer.from(await blob.arrayBuffer());
      expect([method, blob.status]).toEqual([method, 404]);
      if (method === 'GET') expect((JSON.parse(body.toString('utf8')) as { errors: { code: string }[] }).errors[0].code).toBe('BLOB_UNKNOWN');
      expect(body.length).toBeLessThan(secret.size);

      const manifest = await registryFetch(app, vrB, 'shared/app', `manifests/${shared.digest}`, { method });
      await manifest.arrayBuffer();
      expect([method, manifest.status]).toEqual([method, 404]);
    }
    expect(await cacheEntryRows(app, `/shared/app/blobs/${secret.digest}`, vrB.upstreamIds)).toEqual([]);
    expect(await cacheEntryRows(app, `/shared/app/manifests/${shared.digest}`, vrB.upstreamIds)).toEqual([]);

    // B's own content is served (the registry works; it is only A's digest that is refused)
    const own = await registryFetch(app, vrB, 'shared/app', `blobs/${othersImage.layers[1].digest}`);
    expect(own.status).toBe(200);
    expect(sha256Digest(Buffer.from(await own.arrayBuffer()))).toBe(othersImage.layers[1].digest);
  });
});
