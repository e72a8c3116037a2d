/**
 * The production topology (issue 11), as docker-compose.yml runs it: the migrate command, then two API
 * replicas (`node dist/src/main.js`) and one worker (`node dist/src/worker.js`) on one Postgres, one Redis
 * (API replicas run no jobs: RUN_JOBS=auto) and S3 storage, pulling from a real upstream registry.
 * Everything the replicas leave to the background (fills after a HEAD, purges, destruction) must happen,
 * and it can only happen in the worker.
 *
 * Needs DATABASE_URL, REDIS_URL and docker-registry; test/support/topology.ts has the process management
 * (start/stop/kill -9/restart one replica, upstream GETs per blob, the consistency check).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { streamDownload, type StreamedDownload } from './support/blob-download.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildImage, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { largeBlobPrefixDigest, pushLargeBlob } from './support/large-blob.js';
import { API_RUNS_NO_JOBS, startTopology, topologySkipReason, type Topology } from './support/topology.js';
import { adminApi, createVirtualRegistry, pullToken, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const skipReason = topologySkipReason();
const suite = skipReason ? describe.skip : describe;

const MiB = 1024 * 1024;
const LARGE_BLOB_SIZE = 100 * MiB;

interface Row {
  id: string;
  upstream_id: number;
  relative_path: string;
  digest: string;
  status: string;
}

/** Polls `check` every 200 ms until it returns a truthy value; throws `what` (and the process logs) after `timeoutMs`. */
async function until<T>(topology: Topology, what: string, timeoutMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${topology.logTails()}`);
    await new Promise((r) => setTimeout(r, 200)); // the polling interval
  }
}

suite(`production topology: 2 API replicas + 1 worker on Postgres, Redis and S3${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let topology: Topology;
  let image: ImageManifestFixture;
  let large: { digest: string; size: number };
  let vr: VirtualRegistry;
  /** A second registry whose own upstream points at the same upstream registry (shares objects with `vr`). */
  let other: VirtualRegistry;
  /** The upstream registry behind a proxy that can slow its blob bodies down (so fills overlap for sure). */
  let slow: FaultyUpstream;
  let slowVr: VirtualRegistry;
  let multiLayer: ImageManifestFixture;

  const rows = (upstreamId: number, digest: string) =>
    topology.query<Row>(`SELECT id, upstream_id, relative_path, digest, status FROM cache_entries WHERE upstream_id = $1 AND digest = $2`, [
      upstreamId,
      digest,
    ]);
  const blobPath = (registry: VirtualRegistry, name: string, digest: string) =>
    `/v2/virtual_registries/containers/${registry.registryId}/${name}/blobs/${digest}`;
  const listed = async (upstreamId: number, digest: string) =>
    adminApi<{ relative_path: string; digest: string }[]>(
      topology.api[1],
      'GET',
      `/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache_entries?search=${digest.slice('sha256:'.length)}`,
    );

  beforeAll(async () => {
    topology = await startTopology();
    image = await buildImage({ seed: 'topology', layerSizes: [256 * 1024, 512 * 1024] });
    await pushImage(topology.upstream.url, 'topo/small', 'v1', image);
    large = await pushLargeBlob(topology.upstream.url, 'topo/large', LARGE_BLOB_SIZE, 'topology-large');
    vr = await createVirtualRegistry(topology.api[0], [{ url: topology.upstream.url }]);
    other = await createVirtualRegistry(topology.api[1], [{ url: topology.upstream.url }]);
    multiLayer = await buildImage({ seed: 'topology-split', layerSizes: [6 * MiB, 6 * MiB, 6 * MiB, 6 * MiB, 6 * MiB] });
    await pushImage(topology.upstream.url, 'topo/split', 'v1', multiLayer);
    slow = await startFaultyUpstream(topology.upstream.url);
    slowVr = await createVirtualRegistry(topology.api[0], [{ url: slow.url }]);
    await topology.upstream.reset();
  }, 300_000);

  afterEach(() => slow?.forward());

  afterAll(async () => {
    await slow?.close();
    await topology?.close();
  }, 120_000);

  it('a fresh worker boots against Postgres and Redis and stays up (every job name has a handler)', async () => {
    const fresh = await topology.addProcess('worker', 'worker-fresh');
    await fresh.start();
    const outcome = await Promise.race([
      fresh.process!.exited.then((code) => `exited with ${code}`),
      // deliberate: five seconds for the worker to exit if it were going to (proving it stays up)
      new Promise<string>((r) => setTimeout(() => r('running'), 5000)),
    ]);
    expect([outcome, fresh.log()]).toEqual(['running', expect.not.stringMatching(/no handler registered/)]);
    expect(await fresh.stop()).toEqual({ code: 0, log: '' });
  }, 90_000);

  it('a HEAD on an uncached blob through replica 1 ends as a cache entry, filled by the worker', async () => {
    const layer = image.layers[0];
    const token = await pullToken(topology.api[0], vr, 'topo/small');
    const head = await fetch(`${topology.api[0].url}${blobPath(vr, 'topo/small', layer.digest)}`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${token}` },
    });
    expect([head.status, head.headers.get('docker-content-digest')]).toEqual([200, layer.digest]);

    // Listed by the admin API of the other replica once the worker's fill job has committed it.
    const entries = await until(topology, 'the HEAD blob is listed as cached', 30_000, async () => {
      const found = await listed(vr.upstreamIds[0], layer.digest);
      return found.length > 0 && found;
    });
    expect(entries).toEqual([expect.objectContaining({ relative_path: `/topo/small/blobs/${layer.digest}`, digest: layer.digest })]);
    expect(await topology.objectKeys()).toContain(topology.blobKey(layer.digest));

    // The fill ran as a job, and only the worker runs jobs: the replicas said so at boot.
    const fills = await topology.jobs('fill-cache-entry');
    expect(fills.filter((j) => JSON.stringify(j.data).includes(layer.digest)).map((j) => j.state)).toEqual(['completed']);
    for (const replica of topology.api) expect(replica.log()).toContain(API_RUNS_NO_JOBS);
    expect(topology.worker.log()).toContain('running jobs');

    // The upstream sent the blob once (to the worker); replica 2 serves it from S3.
    const since = await topology.upstream.mark();
    const download = await streamDownload(topology.api[1].url, blobPath(vr, 'topo/small', layer.digest), {
      headers: { authorization: `Bearer ${await pullToken(topology.api[1], vr, 'topo/small')}` },
    });
    expect([download.status, download.complete, download.digest]).toEqual([200, true, layer.digest]);
    expect((await topology.upstreamBlobGets(since)).get(layer.digest)).toBeUndefined();
    expect((await topology.upstreamBlobGets()).get(layer.digest)).toBe(1);
  }, 90_000);

  it('a purge is destroyed by the worker at once: entries go, objects no other entry uses are deleted', async () => {
    const [shared, own] = image.layers; // `shared` is cached by `vr` (previous test) and, below, by `other` too
    const get = async (registry: VirtualRegistry, replica: number, digest: string) => {
      const token = await pullToken(topology.api[replica], registry, 'topo/small');
      const res = await streamDownload(topology.api[replica].url, blobPath(registry, 'topo/small', digest), { headers: { authorization: `Bearer ${token}` } });
      expect([res.status, res.digest]).toEqual([200, digest]);
    };
    await get(vr, 0, shared.digest); // cached already: makes sure of it
    await get(vr, 0, own.digest);
    await get(other, 1, shared.digest);
    const upstreamId = vr.upstreamIds[0];
    const otherUpstreamId = other.upstreamIds[0];
    await until(topology, 'all three entries are live', 30_000, async () => {
      const all = [...(await rows(upstreamId, shared.digest)), ...(await rows(upstreamId, own.digest)), ...(await rows(otherUpstreamId, shared.digest))];
      return all.length === 3 && all.every((r) => r.status === 'default');
    });
    const keys = await topology.objectKeys();
    expect(keys).toEqual(expect.arrayContaining([topology.blobKey(shared.digest), topology.blobKey(own.digest)]));

    const purgedAt = Date.now();
    await adminApi(topology.api[0], 'DELETE', `/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache`);

    // Well within the destroy job's one-minute schedule: the purge enqueues the destruction itself.
    await until(topology, "the purged upstream's rows are destroyed", 20_000, async () => {
      const left = await topology.query<{ n: number }>(`SELECT count(*)::int AS n FROM cache_entries WHERE upstream_id = $1`, [upstreamId]);
      return left[0].n === 0;
    });
    await until(
      topology,
      'the object only the purged upstream used is deleted',
      10_000,
      async () => !(await topology.objectKeys()).includes(topology.blobKey(own.digest)),
    );
    const destroyedWithinMs = Date.now() - purgedAt;
    expect(destroyedWithinMs).toBeLessThan(30_000);

    // The object the other registry's entry still uses stays, and that entry stays live and served.
    expect(await topology.objectKeys()).toContain(topology.blobKey(shared.digest));
    expect((await rows(otherUpstreamId, shared.digest)).map((r) => r.status)).toEqual(['default']);
    const since = await topology.upstream.mark();
    await get(other, 0, shared.digest);
    expect((await topology.upstreamBlobGets(since)).get(shared.digest)).toBeUndefined();

    const workerLog = topology.worker.log();
    expect(workerLog).toMatch(/marked 2 cache entries of upstream\(s\) \d+ for destruction/);
    expect(workerLog).toContain('destroy run finished');
    for (const replica of topology.api) expect(replica.log()).not.toContain('destroy run finished');
  }, 90_000);

  it('a client that hangs up after 1 MiB of a 100 MiB blob (replica 2) still leaves it cached; then it is served whole without the upstream', async () => {
    const upstreamId = vr.upstreamIds[0];
    const since = await topology.upstream.mark();
    const token = await pullToken(topology.api[1], vr, 'topo/large');
    const partial = await streamDownload(topology.api[1].url, blobPath(vr, 'topo/large', large.digest), {
      headers: { authorization: `Bearer ${token}` },
      abortAfterBytes: MiB,
    });
    expect([partial.status, partial.complete]).toEqual([200, false]);
    expect(partial.received).toBeLessThan(LARGE_BLOB_SIZE);

    await until(topology, 'the abandoned blob is cached', 120_000, async () => (await rows(upstreamId, large.digest)).some((r) => r.status === 'default'));
    expect(await topology.objectKeys()).toContain(topology.blobKey(large.digest));

    const afterFill = await topology.upstream.mark();
    for (const replica of [1, 0]) {
      const full = await streamDownload(topology.api[replica].url, blobPath(vr, 'topo/large', large.digest), {
        headers: { authorization: `Bearer ${await pullToken(topology.api[replica], vr, 'topo/large')}` },
      });
      expect([replica, full.status, full.complete, full.received, full.digest]).toEqual([replica, 200, true, LARGE_BLOB_SIZE, large.digest]);
    }
    expect((await topology.upstreamBlobGets(afterFill)).get(large.digest)).toBeUndefined();
    // One upstream GET in all: the abandoned download's fill ran to its end instead of being fetched again.
    expect((await topology.upstreamBlobGets(since)).get(large.digest)).toBe(1);
  }, 240_000);

  it('8 concurrent cold skopeo pulls of a 5-layer image, odd clients on replica 1 and even on replica 2: one upstream GET per blob in all, 8 correct copies', async () => {
    slow.set({ kind: 'throttle', bytesPerSecond: 24 * MiB }, { method: 'GET', path: /\/blobs\// });
    const since = await topology.upstream.mark();
    const dirs = Array.from({ length: 8 }, () => {
      const d = mkdtempSync(join(tmpdir(), 'cvr-topo-pull-'));
      rmSync(d, { recursive: true });
      return d;
    });
    try {
      await Promise.all(
        dirs.map((dir, i) => {
          const host = new URL(topology.api[i % 2].url).host;
          const source = `docker://${host}/virtual_registries/containers/${slowVr.registryId}/topo/split:v1`;
          const creds = `${slowVr.pullUser.username}:${slowVr.pullUser.token}`;
          return run('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, source, `dir:${dir}`], { timeout: 180_000 });
        }),
      );
      for (const dir of dirs) {
        // skopeo verified every digest; the copies hold exactly the image's blobs
        const blobs = readdirSync(dir)
          .filter((f) => /^[a-f0-9]{64}$/.test(f))
          .map((f) => sha256Digest(readFileSync(join(dir, f))));
        expect(blobs.sort()).toEqual([multiLayer.config.digest, ...multiLayer.layers.map((l) => l.digest)].sort());
      }
    } finally {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    }
    const gets = await topology.upstreamBlobGets(since);
    for (const blob of [multiLayer.config, ...multiLayer.layers]) expect([blob.digest, gets.get(blob.digest)]).toEqual([blob.digest, 1]);
  }, 240_000);

  it('followers on the replica that did not win the fill stream it from the other one: first bytes before the fill ends, one upstream GET', async () => {
    const blob = await pushLargeBlob(topology.upstream.url, 'topo/follow', 40 * MiB, 'topology-follow');
    slow.set({ kind: 'throttle', bytesPerSecond: 16 * MiB }, { method: 'GET', path: /\/blobs\// }); // about 2.5 s
    const path = blobPath(slowVr, 'topo/follow', blob.digest);
    const since = await topology.upstream.mark();
    const [leaderToken, followerToken] = await Promise.all([
      pullToken(topology.api[0], slowVr, 'topo/follow'),
      pullToken(topology.api[1], slowVr, 'topo/follow'),
    ]);
    const rowsAtFirstByte: Promise<number>[] = [];
    const followers: Promise<StreamedDownload>[] = [];
    const leader = await streamDownload(topology.api[0].url, path, {
      headers: { authorization: `Bearer ${leaderToken}` },
      onFirstByte: () => {
        // replica 1 holds the fill now: three clients of replica 2 join it
        for (let i = 0; i < 3; i++) {
          followers.push(
            streamDownload(topology.api[1].url, path, {
              headers: { authorization: `Bearer ${followerToken}` },
              onFirstByte: () => {
                rowsAtFirstByte.push(rows(slowVr.upstreamIds[0], blob.digest).then((r) => r.filter((x) => x.status === 'default').length));
              },
            }),
          );
        }
      },
    });
    const joined = await Promise.all(followers);
    const whole = `200 true ${blob.size} ${blob.digest}`;
    const summary = (d: StreamedDownload) => `${d.status} ${d.complete} ${d.received} ${d.digest}`;
    expect([leader, ...joined].map(summary)).toEqual(Array.from({ length: 4 }, () => whole));
    for (const follower of joined) expect(follower.firstByteAt!).toBeLessThan(leader.endedAt);
    expect(await Promise.all(rowsAtFirstByte)).toEqual([0, 0, 0]);
    expect((await topology.upstreamBlobGets(since)).get(blob.digest)).toBe(1);
    expect(topology.api[1].log()).not.toContain('taking over');
  }, 120_000);

  it('kill -9 of the replica leading a fill: its followers on the other replica fail at once with a true prefix, the next request fills, the storage stays consistent', async () => {
    const seed = 'topology-kill';
    const blob = await pushLargeBlob(topology.upstream.url, 'topo/kill', 40 * MiB, seed);
    slow.set({ kind: 'throttle', bytesPerSecond: 8 * MiB }, { method: 'GET', path: /\/blobs\// }); // about 5 s
    const path = blobPath(slowVr, 'topo/kill', blob.digest);
    const followerToken = await pullToken(topology.api[1], slowVr, 'topo/kill');
    const leaderToken = await pullToken(topology.api[0], slowVr, 'topo/kill');
    let followersHaveBytes!: () => void;
    const followersStarted = new Promise<void>((r) => (followersHaveBytes = r));
    let streaming = 0;
    const followers: Promise<StreamedDownload>[] = [];
    const leader = streamDownload(topology.api[0].url, path, {
      headers: { authorization: `Bearer ${leaderToken}` },
      onFirstByte: () => {
        for (let i = 0; i < 2; i++) {
          const onFirstByte = () => {
            if (++streaming === 2) followersHaveBytes();
          };
          followers.push(streamDownload(topology.api[1].url, path, { headers: { authorization: `Bearer ${followerToken}` }, onFirstByte }));
        }
      },
    });
    // both clients of replica 2 are streaming replica 1's fill when it dies
    await followersStarted;
    await topology.api[0].kill();
    const killedAt = Date.now();
    const cut = await Promise.all(followers);
    const failedWithinMs = Date.now() - killedAt;
    await leader;
    for (const follower of cut) {
      expect({ complete: follower.complete, short: follower.received < blob.size }).toEqual({ complete: false, short: true });
      // never wrong bytes: what arrived is the blob's own beginning
      expect(follower.digest).toBe(largeBlobPrefixDigest(seed, follower.received));
    }
    expect(failedWithinMs).toBeLessThan(10_000);

    // The next request (on the surviving replica) does not wait for the dead holder's lease: it takes it over and fills.
    slow.forward();
    const next = await streamDownload(topology.api[1].url, path, { headers: { authorization: `Bearer ${followerToken}` }, timeoutMs: 60_000 });
    expect([next.status, next.complete, next.digest]).toEqual([200, true, blob.digest]);
    expect(next.endedAt - killedAt).toBeLessThan(30_000);
    await until(topology, 'the blob is cached after the takeover', 30_000, async () =>
      (await rows(slowVr.upstreamIds[0], blob.digest)).some((r) => r.status === 'default'),
    );
    expect(await topology.objectKeys()).toContain(topology.blobKey(blob.digest));

    await topology.api[0].restart();
    const check = await topology.consistencyCheck();
    expect({ code: check.code, entriesWithoutObject: check.report?.found.entriesWithoutObject.count }).toEqual({ code: 0, entriesWithoutObject: 0 });
    const served = await streamDownload(topology.api[0].url, path, {
      headers: { authorization: `Bearer ${await pullToken(topology.api[0], slowVr, 'topo/kill')}` },
    });
    expect([served.status, served.complete, served.digest]).toEqual([200, true, blob.digest]);
  }, 180_000);

  it('the storage is consistent: no live entry without its object', async () => {
    const check = await topology.consistencyCheck();
    expect(check.report?.found.entriesWithoutObject.count).toBe(0);
    expect(check.code === 0 || check.code === 1).toBe(true);
  }, 60_000);

  it('the worker is still up after the other tests, and every job they caused ran there', async () => {
    expect(topology.worker.running).toBe(true);
    const jobs = await topology.jobs();
    expect(jobs.filter((j) => j.state === 'failed')).toEqual([]);
    expect(jobs.filter((j) => j.name === 'fill-cache-entry' && j.state === 'completed').length).toBeGreaterThan(0);
    expect(jobs.filter((j) => j.name === 'mark-for-destruction' && j.state === 'completed').length).toBe(1);
    for (const replica of topology.api) {
      expect(replica.running).toBe(true);
      expect(replica.log()).toContain(API_RUNS_NO_JOBS);
      expect(replica.log()).not.toContain('running jobs');
    }
  }, 60_000);
});
