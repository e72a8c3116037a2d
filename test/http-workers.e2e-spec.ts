/**
 * HTTP_WORKERS=2: one API process (`node dist/src/main.js`) that is a node:cluster primary with two HTTP
 * workers sharing its port, next to the worker process, on Postgres, Redis and S3 (test/support/topology.ts).
 * Clients see one endpoint; connections go to the workers in turn, so concurrent pulls of one blob meet in
 * two processes, which must still download it once. `/metrics` on either worker counts both.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST, processEnv, spawnAppProcess, stopAppProcess } from './support/app-process.js';
import { streamDownload, type StreamedDownload } from './support/blob-download.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { pushLargeBlob } from './support/large-blob.js';
import { realServices } from './support/services.js';
import { createScratchDatabase } from './support/test-app.js';
import { findFreePort } from './support/upstream-registry.js';
import { removeQueueKeys, startTopology, topologySkipReason, type Topology, type TopologyProcess } from './support/topology.js';
import { createVirtualRegistry, pullToken, type VirtualRegistry } from './support/virtual-registry.js';

const skipReason = topologySkipReason();
const suite = skipReason ? describe.skip : describe;
const MiB = 1024 * 1024;

/** The pids of a process's children (its HTTP workers), from /proc. */
function childrenOf(pid: number): number[] {
  const tasks = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return tasks ? tasks.split(/\s+/).map(Number) : [];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, timeoutMs: number, check: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200)); // the polling interval
  }
}

/** The sum of a counter's samples whose labels include all of `labels`, from the Prometheus text. */
function counterSum(metrics: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

suite(`HTTP_WORKERS=2: one API process, two HTTP workers on one port${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let topology: Topology;
  let api: TopologyProcess;
  let slow: FaultyUpstream;
  let vr: VirtualRegistry;

  const primaryPid = () => api.process!.pid!;

  beforeAll(async () => {
    topology = await startTopology({ apiReplicas: 1, env: { HTTP_WORKERS: '2' } });
    api = topology.api[0];
    slow = await startFaultyUpstream(topology.upstream.url);
    vr = await createVirtualRegistry(api, [{ url: slow.url }]);
  }, 300_000);

  afterEach(() => slow?.forward());

  afterAll(async () => {
    await slow?.close();
    await topology?.close();
  }, 120_000);

  it('the API process serves nothing itself: it runs two HTTP workers, which logged that they listen', async () => {
    expect(childrenOf(primaryPid())).toHaveLength(2);
    await until('both workers listen', 60_000, () => api.log().includes('2 HTTP workers share port') && api.log().match(/listening on http/g)?.length === 2);
  });

  it('/metrics counts the requests of both workers, whichever answers the scrape', async () => {
    const counted = async () =>
      counterSum(await (await fetch(`${api.url}/metrics`, { headers: { connection: 'close' } })).text(), 'http_requests_total', {
        route: '/-/health',
        status: '200',
      });
    const before = await counted();
    // A new connection each: the workers take them in turn.
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${api.url}/-/health`, { headers: { connection: 'close' } });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    for (let i = 0; i < 4; i++) expect(await counted()).toBe(before + 10);
    // The queue's job counts are there once, not once per worker.
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics.match(/^# TYPE registry_queue_jobs gauge$/gm)).toHaveLength(1);
  });

  it('8 concurrent GETs of an uncached blob, spread over both workers: one upstream GET, 8 whole and correct copies', async () => {
    const blob = await pushLargeBlob(topology.upstream.url, 'workers/blob', 24 * MiB, 'http-workers');
    slow.set({ kind: 'throttle', bytesPerSecond: 16 * MiB }, { method: 'GET', path: /\/blobs\// }); // about 1.5 s
    const since = await topology.upstream.mark();
    const token = await pullToken(api, vr, 'workers/blob');
    const path = `/v2/virtual_registries/containers/${vr.registryId}/workers/blob/blobs/${blob.digest}`;
    const downloads: StreamedDownload[] = await Promise.all(
      Array.from({ length: 8 }, () => streamDownload(api.url, path, { headers: { authorization: `Bearer ${token}` } })),
    );
    const whole = `200 true ${blob.size} ${blob.digest}`;
    expect(downloads.map((d) => `${d.status} ${d.complete} ${d.received} ${d.digest}`)).toEqual(Array.from({ length: 8 }, () => whole));
    expect((await topology.upstreamBlobGets(since)).get(blob.digest)).toBe(1);
    expect(api.log()).not.toContain('taking over');
  }, 120_000);

  it('a worker killed with SIGKILL is replaced, and the endpoint keeps answering', async () => {
    const [victim, survivor] = childrenOf(primaryPid());
    process.kill(victim, 'SIGKILL');
    const replaced = await until('a new HTTP worker', 60_000, () => {
      const now = childrenOf(primaryPid());
      return now.length === 2 && !now.includes(victim) && now;
    });
    expect(replaced).toContain(survivor);
    await until('the new worker listens', 60_000, () => (api.log().match(/listening on http/g)?.length ?? 0) >= 3);
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${api.url}/-/ready`, { headers: { connection: 'close' } });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect(api.log()).toContain(`HTTP worker ${victim} ended (signal SIGKILL): starting another`);
  }, 120_000);

  it('SIGTERM to the API process stops both workers and exits 0', async () => {
    const workers = childrenOf(primaryPid());
    expect(await api.stop()).toEqual({ code: 0, log: '' });
    expect(workers.filter(alive)).toEqual([]);
  }, 60_000);
});

suite(`HTTP_WORKERS=2 that cannot keep its workers${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('a worker that fails to start (no such database) ends the API process with exit 1 and the reason, instead of being restarted', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cvr-workers-boot-'));
    try {
      const database = new URL(realServices.postgresUrl!);
      database.pathname = `/cvr_no_such_database_${process.pid}`;
      const proc = spawnAppProcess(
        DIST.api,
        processEnv({ HTTP_WORKERS: '2', DATABASE_URL: database.href, REDIS_URL: realServices.redisUrl, DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info' }),
      );
      const code = await Promise.race([proc.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 30_000))]);
      if (code === 'still running') await stopAppProcess(proc, { signal: 'SIGKILL' });
      expect(code).toBe(1);
      expect(proc.stderr()).toMatch(/Startup failed: .*cvr_no_such_database/);
      expect(proc.stdout()).toMatch(/HTTP worker \d+ ended before it listened \(exit code 1\): stopping/);
      // one worker was started, not two, and none was restarted
      expect(proc.stderr().match(/Startup failed/g)).toHaveLength(1);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('workers that keep dying are replaced 5 times in a minute; the 6th ends the API process with exit 1', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cvr-workers-crash-'));
    const scratch = await createScratchDatabase();
    const port = await findFreePort();
    const queuePrefix = `cvr-workers-crash-${process.pid}-${Date.now()}`;
    const proc = spawnAppProcess(
      DIST.api,
      processEnv({
        HTTP_WORKERS: '2',
        DATABASE_URL: scratch.url,
        REDIS_URL: realServices.redisUrl,
        QUEUE_PREFIX: queuePrefix,
        DATA_DIR: dataDir,
        PORT: String(port),
        LOG_LEVEL: 'info',
      }),
    );
    const listened = () => proc.stdout().match(/listening on http/g)?.length ?? 0;
    try {
      await until('both workers listen', 60_000, () => listened() === 2);
      for (let kill = 1; kill <= 6; kill++) {
        // the newest worker, once it listens (one that dies before that is a boot failure, another rule)
        const newest = Math.max(...childrenOf(proc.pid!));
        process.kill(newest, 'SIGKILL');
        if (kill <= 5) await until(`replacement ${kill} listens`, 60_000, () => listened() === 2 + kill && childrenOf(proc.pid!).length === 2);
      }
      const code = await Promise.race([proc.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 30_000))]);
      expect(code).toBe(1);
      expect(proc.stdout().match(/ended \(signal SIGKILL\): starting another/g)).toHaveLength(5);
      expect(proc.stdout()).toMatch(/ended \(signal SIGKILL\), the 6th in a minute: stopping/);
    } finally {
      await stopAppProcess(proc, { signal: 'SIGKILL' });
      await scratch.drop();
      await removeQueueKeys(realServices.redisUrl!, queuePrefix);
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});
