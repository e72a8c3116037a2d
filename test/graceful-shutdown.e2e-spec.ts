/**
 * Graceful shutdown of the real API process (`node dist/src/main.js`) during a pull: SIGTERM while a
 * keep-alive client downloads a blob that is still filling. The download completes with the right bytes,
 * the process says what it is still waiting for while it drains, and it exits 0 as soon as the response
 * has ended, well within SHUTDOWN_TIMEOUT_MS. (Before, the client's kept-alive connection held the HTTP
 * server's close open for Fastify's 72 s keep-alive timeout: every shutdown during a pull ended in exit 1.)
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST, outputTail, processEnv, spawnAppProcess, waitUntilServing, type AppProcess } from './support/app-process.js';
import { streamDownload } from './support/blob-download.js';
import { waitFor } from './support/eventually.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildImage, pushImage, type ImageManifestFixture } from './support/image-fixtures.js';
import { s3StorageEnv, startS3Server, type S3TestServer } from './support/s3-server.js';
import { realServices } from './support/services.js';
import { TEST_ADMIN_TOKEN } from './support/test-app.js';
import { findFreePort, startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { adminApi } from './support/virtual-registry.js';

const canRun = realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const SHUTDOWN_TIMEOUT_MS = 25_000;

describe.each(['filesystem', 's3'] as const)('storage %s:', (storage) => {
  suite(`graceful shutdown of the API process during a pull${canRun ? '' : ' (skipped: docker-registry is not installed)'}`, () => {
    let upstream: UpstreamRegistry;
    let faulty: FaultyUpstream;
    let image: ImageManifestFixture;
    /** A layer larger than the socket buffers can hold (here tcp_rmem and tcp_wmem allow up to 32 + 4 MiB): a paused client leaves its response in flight (an 8 MiB one could be sent whole). */
    let big: ImageManifestFixture;
    let dataDir: string;
    let app: AppProcess | undefined;
    let s3Server: S3TestServer | undefined;
    let storageEnv: Record<string, string> = {};

    beforeAll(async () => {
      upstream = await startUpstreamRegistry();
      image = await buildImage({ seed: 'graceful-shutdown', format: 'oci', layerSizes: [8 << 20] });
      await pushImage(upstream.url, 'drain/test', 'v1', image);
      big = await buildImage({ seed: 'graceful-shutdown-big', format: 'oci', layerSizes: [64 << 20] });
      await pushImage(upstream.url, 'drain/test', 'big', big);
      faulty = await startFaultyUpstream(upstream.url);
      dataDir = mkdtempSync(join(tmpdir(), 'cvr-shutdown-'));
      if (storage === 's3') {
        s3Server = await startS3Server(join(dataDir, 's3'));
        storageEnv = await s3StorageEnv(s3Server);
      }
    }, 120_000);

    afterAll(async () => {
      if (app?.running) app.child.kill('SIGKILL');
      await faulty?.close();
      await upstream?.close();
      await s3Server?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    /** Starts the API process on DATA_DIR (the embedded database: a restart keeps the registry and the cache). */
    const startApp = async (): Promise<string> => {
      const port = await findFreePort();
      app = spawnAppProcess(
        DIST.api,
        processEnv({
          PORT: String(port),
          DATA_DIR: dataDir,
          LOG_LEVEL: 'warn',
          INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
          UPSTREAM_ALLOW_PRIVATE: 'true',
          SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
          ...storageEnv,
        }),
      );
      const url = `http://127.0.0.1:${port}`;
      await waitUntilServing(app, url);
      return url;
    };
    const token = async (url: string): Promise<string> => {
      const scope = `repository:virtual_registries/containers/${registryId}/drain/test:pull`;
      const res = await fetch(`${url}/jwt/auth?service=virtual_registry&scope=${encodeURIComponent(scope)}`, {
        headers: { authorization: `Basic ${Buffer.from(`root:${TEST_ADMIN_TOKEN}`).toString('base64')}` },
      });
      return ((await res.json()) as { token: string }).token;
    };
    const blobPath = (digest: string) => `/v2/virtual_registries/containers/${registryId}/drain/test/blobs/${digest}`;
    /** The exit code, or 'still running' after `ms`. */
    const exitWithin = (proc: AppProcess, ms: number) =>
      Promise.race([proc.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), ms))]);
    let registryId: number;

    it('SIGTERM mid-fill: the download completes, the process names the fill it drains, and exits 0', async () => {
      const url = await startApp();
      const group = await adminApi<{ id: number }>({ url }, 'POST', '/api/v4/groups', { name: 'Drain', path: 'drain' });
      const registry = await adminApi<{ id: number }>({ url }, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, {
        name: 'drain',
      });
      registryId = registry.id;
      await adminApi({ url }, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, { name: 'slow', url: faulty.url });

      // 8 MiB at 1 MiB/s: the fill and its client's response run for several seconds after the signal.
      faulty.set({ kind: 'throttle', bytesPerSecond: 1 << 20 }, { method: 'GET', path: /\/blobs\// });
      const layer = image.layers[0];
      let received = 0;
      // node:http's global agent keeps the connection alive, as registry clients do.
      const download = streamDownload(url, blobPath(layer.digest), {
        headers: { authorization: `Bearer ${await token(url)}` },
        onProgress: (bytes) => (received = bytes),
        timeoutMs: 60_000,
      });
      await waitFor('the download to be past its first megabyte', () => received > 1 << 20, { timeoutMs: 30_000, intervalMs: 25 });
      const proc = app!;
      proc.child.kill('SIGTERM');

      const done = await download;
      expect([done.status, done.complete, done.received, done.digest]).toEqual([200, true, layer.size, layer.digest]);
      expect([await exitWithin(proc, 10_000), outputTail(proc, 10)]).toEqual([0, expect.any(String)]);
      // While it drained, it said what it waited for: the fill in progress, with its progress.
      expect(proc.stdout()).toMatch(
        /shutting down: still waiting for ProxyBlobStore\.beforeApplicationShutdown for \d+\.\d s \(0 fill start\(s\) being decided, 1 fill\(s\) running: \d+ \S*\/drain\/test\/blobs\/sha256:[0-9a-f]{64} at \d+ of \d+ bytes/,
      );
      expect(proc.stdout()).not.toContain('shutdown did not finish');
      faulty.forward();
    }, 120_000);

    it('SIGTERM while a slow keep-alive client reads a cached blob: the download completes, and the process exits 0 right after, not at a timeout', async () => {
      const url = await startApp();
      const bearer = { authorization: `Bearer ${await token(url)}` };
      const layer = image.layers[0];
      const seen = faulty.requests.length;
      // Served from the cache: the fill the first shutdown drained was stored and recorded.
      const drained = await streamDownload(url, blobPath(layer.digest), { headers: bearer, timeoutMs: 60_000 });
      expect([drained.status, drained.complete, drained.digest]).toEqual([200, true, layer.digest]);
      expect(faulty.requests.slice(seen).filter((r) => r.path.includes('/blobs/'))).toEqual([]);
      // A blob too large for the socket buffers, cached first.
      const bigLayer = big.layers[0];
      const filled = await streamDownload(url, blobPath(bigLayer.digest), { headers: bearer, timeoutMs: 60_000 });
      expect([filled.status, filled.complete, filled.digest]).toEqual([200, true, bigLayer.digest]);

      let resume!: () => void;
      const slowClient = new Promise<void>((resolve) => (resume = resolve));
      let received = 0;
      // The client stops reading after 1 MiB: the response is still being sent when the server closes.
      const download = streamDownload(url, blobPath(bigLayer.digest), {
        headers: bearer,
        onProgress: (bytes) => (received = bytes),
        pauseAfterBytes: { bytes: 1 << 20, until: slowClient },
        timeoutMs: 60_000,
      });
      await waitFor('the download to be past its first megabyte', () => received >= 1 << 20, { timeoutMs: 30_000, intervalMs: 25 });
      const proc = app!;
      proc.child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // it waits for the response in flight (the log's tail says why if it did not)
      expect([proc.running, proc.running ? '' : outputTail(proc, 20)]).toEqual([true, '']);
      resume();

      const done = await download;
      expect([done.status, done.complete, done.received, done.digest]).toEqual([200, true, bigLayer.size, bigLayer.digest]);
      // Closed once its last request ended; before, the kept-alive connection held the close open until
      // Fastify's keep-alive timeout (72 s), and SHUTDOWN_TIMEOUT_MS ended the process with exit 1.
      expect([await exitWithin(proc, 5_000), outputTail(proc, 10)]).toEqual([0, expect.any(String)]);
      expect(proc.stdout()).not.toContain('shutdown did not finish');
    }, 120_000);

    it('SIGTERM while a client holds a connection it has not used yet: the process closes it and exits 0 at once', async () => {
      const url = await startApp();
      // A client that opened a connection ahead of its request (a pool warming up, a proxy's spare
      // connection). Node counts it as waiting for its first request's headers, not as idle: it held the
      // closing server open until the headers timeout (60 s), and SHUTDOWN_TIMEOUT_MS ended it with exit 1.
      const unused = connect(Number(new URL(url).port), '127.0.0.1');
      unused.on('error', () => undefined);
      await once(unused, 'connect');
      const closed = once(unused, 'close');
      const proc = app!;
      proc.child.kill('SIGTERM');
      expect([await exitWithin(proc, 5_000), outputTail(proc, 10)]).toEqual([0, expect.any(String)]);
      await closed;
      expect(proc.stdout()).not.toContain('shutdown did not finish');
    }, 60_000);
  });
});
