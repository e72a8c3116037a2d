/**
 * Crash safety (issue 6, acceptance 5): `kill -9` the real API process while 4 blob fills stream in,
 * then the shipped consistency check (`node dist/src/lifecycle/consistency-check.js`, `npm run cache:check`)
 * finds no live row without its object; `--fix` (the orphan cleanup) removes the leftovers; the app
 * restarts and serves the blobs with the right digests.
 */
import { ChildProcess, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ConsistencyCheckResult } from '../src/lifecycle/consistency-check.js';
import { DIST, distPath, spawnAppProcess, waitUntilServing } from './support/app-process.js';
import { streamDownload } from './support/blob-download.js';
import { waitFor } from './support/eventually.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildImage, pushImage, type ImageManifestFixture } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { TEST_ADMIN_TOKEN, createScratchDatabase } from './support/test-app.js';
import { findFreePort, startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const CHECK = distPath(DIST.consistencyCheck);

async function api<T>(url: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status >= 300) throw new Error(`${method} ${path} -> ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

suite(`crash safety: kill -9 during parallel fills${canRun ? '' : ' (skipped: docker-registry is not installed)'}`, () => {
  let upstream: UpstreamRegistry;
  let faulty: FaultyUpstream;
  let image: ImageManifestFixture;
  let dataDir: string;
  let dropDatabase: (() => Promise<void>) | undefined;
  let env: NodeJS.ProcessEnv;
  let child: ChildProcess | undefined;

  const start = async (): Promise<string> => {
    const port = await findFreePort();
    const proc = spawnAppProcess(DIST.api, { ...env, PORT: String(port) });
    child = proc.child;
    const url = `http://127.0.0.1:${port}`;
    await waitUntilServing(proc, url);
    return url;
  };

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    image = await buildImage({ seed: 'crash', format: 'oci', layerSizes: [24 << 20, 24 << 20, 24 << 20, 24 << 20] });
    await pushImage(upstream.url, 'crash/test', 'v1', image);
    faulty = await startFaultyUpstream(upstream.url);
    dataDir = mkdtempSync(join(tmpdir(), 'cvr-crash-'));
    let databaseUrl: string | undefined;
    if (process.env.DATABASE_URL) ({ url: databaseUrl, drop: dropDatabase } = await createScratchDatabase());
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'error',
      INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      UPSTREAM_ALLOW_PRIVATE: 'true',
      ORPHAN_GRACE_PERIOD_MS: '0',
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    };
  }, 120_000);

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await faulty?.close();
    await upstream?.close();
    await dropDatabase?.();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('leaves no live row without its object; the cleanup removes leftovers; the restarted app serves correct bytes', async () => {
    let url = await start();
    const group = await api<{ id: number }>(url, 'POST', '/api/v4/groups', { name: 'Crash', path: 'crash' });
    const registry = await api<{ id: number }>(url, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'crash' });
    await api(url, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, { name: 'slow', url: faulty.url });

    const token = async (base: string) => {
      const scope = `repository:virtual_registries/containers/${registry.id}/crash/test:pull`;
      const res = await fetch(`${base}/jwt/auth?service=virtual_registry&scope=${encodeURIComponent(scope)}`, {
        headers: { authorization: `Basic ${Buffer.from(`root:${TEST_ADMIN_TOKEN}`).toString('base64')}` },
      });
      return ((await res.json()) as { token: string }).token;
    };
    const blobPath = (digest: string) => `/v2/virtual_registries/containers/${registry.id}/crash/test/blobs/${digest}`;

    // Four fills in flight, each well past its first megabyte, then the process dies without warning.
    faulty.set({ kind: 'throttle', bytesPerSecond: 4 << 20 }, { method: 'GET', path: /\/blobs\// });
    const jwt = await token(url);
    const received = image.layers.map(() => 0);
    image.layers.forEach((layer, i) => {
      void streamDownload(url, blobPath(layer.digest), {
        headers: { authorization: `Bearer ${jwt}` },
        onProgress: (bytes) => (received[i] = bytes),
        timeoutMs: 60_000,
      });
    });
    await waitFor('every download to be past its third megabyte', () => received.every((bytes) => bytes > 3 << 20), { timeoutMs: 60_000, intervalMs: 25 });
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    faulty.forward();

    // Never a live row without its object (partial writes are temp objects, invisible to readers).
    const check = await run(process.execPath, [CHECK, '--json'], { env }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    );
    const report = (JSON.parse(check.stdout) as ConsistencyCheckResult).found;
    expect(report.entriesWithoutObject.count).toBe(0);
    // The killed writes did leave temporary objects behind (so the cleanup below has work to do).
    expect(report.staleTemporaryObjects.count).toBeGreaterThan(0);
    expect(check.code).toBe(1);

    // The cleanup removes whatever the killed writes left; afterwards the check is clean (exit 0).
    await run(process.execPath, [CHECK, '--fix'], { env }).catch(() => undefined);
    const clean = await run(process.execPath, [CHECK, '--json'], { env });
    const after = (JSON.parse(clean.stdout) as ConsistencyCheckResult).found;
    expect(after.entriesWithoutObject.count + after.objectsWithoutEntry.count + after.staleTemporaryObjects.count).toBe(0);

    // The restarted app serves every layer with the right digest.
    url = await start();
    const again = await token(url);
    for (const layer of image.layers) {
      const download = await streamDownload(url, blobPath(layer.digest), { headers: { authorization: `Bearer ${again}` }, timeoutMs: 60_000 });
      expect([layer.digest, download.status, download.digest]).toEqual([layer.digest, 200, layer.digest]);
    }
    child!.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
  }, 240_000);
});
