/**
 * Issue 13, acceptance 1: the data-plane offload behind a real Debian nginx with the shipped
 * configuration (deploy/nginx/registry.conf.template), BLOB_OFFLOAD=x-accel, real skopeo and podman.
 * The app decides (authorization on every request, hit or miss, counting); nginx sends the files of hits.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { blobContentPath } from '../src/storage/blob-store.js';
import { rawRequest, streamDownload, type StreamedDownload } from './support/blob-download.js';
import { liveCacheEntryRows, metricValue, waitForLiveRow } from './support/cache-observation.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildImage, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { pushLargeBlob } from './support/large-blob.js';
import { startNginxFront, type NginxFront } from './support/nginx-front.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { adminApi, createVirtualRegistry, pullToken, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const NGINX = '/usr/sbin/nginx';
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo') && realServices.hasBinary(NGINX);
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry, skopeo or nginx is not installed; bash .ci/install-packages.sh)';
const podmanIt = realServices.hasBinary('podman') ? it : it.skip;

const MiB = 1024 * 1024;
const BYTES_SERVED = 'registry_bytes_served_total';

function outcome(d: StreamedDownload): string {
  return `${d.status} ${d.complete ? 'complete' : 'incomplete'} ${d.received}/${d.declaredLength ?? '?'} ${d.digest}`;
}

/** The claims of a registry JWT (the personal access token behind it is `credential.id`). */
function claims(jwt: string): { credential: { id: number } } {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as { credential: { id: number } };
}

suite(`blob offload through nginx (BLOB_OFFLOAD=x-accel)${reason}`, () => {
  let app: TestApp;
  let front: NginxFront;
  let upstream: UpstreamRegistry;
  let faulty: FaultyUpstream;
  let image: ImageManifestFixture;
  let vr: VirtualRegistry;
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'cvr-offload-'));
    dirs.push(d);
    rmSync(d, { recursive: true });
    return d;
  };
  const blobPath = (registry: VirtualRegistry, name: string, digest: string) =>
    `/v2/virtual_registries/containers/${registry.registryId}/${name}/blobs/${digest}`;
  const prefixVia = (registry: VirtualRegistry) => `${new URL(front.url).host}/virtual_registries/containers/${registry.registryId}`;
  const skopeoCopy = async (source: string, dir: string, creds: string[]) =>
    run('skopeo', ['copy', '--src-tls-verify=false', ...creds, `docker://${source}`, `dir:${dir}`], { timeout: 120_000, maxBuffer: 16 * MiB });
  const pullCreds = (registry: VirtualRegistry) => ['--src-creds', `${registry.pullUser.username}:${registry.pullUser.token}`];
  const blobsOf = (fixture: ImageManifestFixture) => [fixture.config, ...fixture.layers];

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    faulty = await startFaultyUpstream(upstream.url);
    image = await buildImage({ seed: 'offload-nginx', format: 'docker', layerSizes: [48 * 1024, 6 * MiB] });
    await pushImage(upstream.url, 'library/offload', 'latest', image);
    app = await startTestApp({ BLOB_OFFLOAD: 'x-accel' });
    front = await startNginxFront({ apiUrl: app.url, blobRoot: join(app.dataDir, 'blobs'), binary: NGINX });
    vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
  }, 120_000);

  afterAll(async () => {
    await front?.stop();
    await app?.close();
    await faulty?.close();
    await upstream?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('skopeo: a warm pull through nginx (bytes sent by nginx) is byte-identical to the cold one the app streamed and to the upstream', async () => {
    const reference = tempDir();
    await skopeoCopy(`${new URL(upstream.url).host}/library/offload:latest`, reference, ['--src-no-creds']);

    const cold = tempDir();
    await skopeoCopy(`${prefixVia(vr)}/library/offload:latest`, cold, pullCreds(vr));
    for (const blob of blobsOf(image)) {
      expect(await waitForLiveRow(app, `/library/offload/blobs/${blob.digest}`, 10_000, vr.upstreamIds)).toBeDefined();
    }

    const offloadedBefore = await metricValue(app, BYTES_SERVED, { source: 'x-accel' });
    const cacheBefore = await metricValue(app, BYTES_SERVED, { source: 'cache' });
    const logBefore = front.accessLog().length;
    const warm = tempDir();
    await skopeoCopy(`${prefixVia(vr)}/library/offload:latest`, warm, pullCreds(vr));

    const files = readdirSync(reference).sort();
    expect(readdirSync(cold).sort()).toEqual(files);
    expect(readdirSync(warm).sort()).toEqual(files);
    for (const file of files) {
      const expected = readFileSync(join(reference, file));
      expect([file, readFileSync(join(cold, file)).equals(expected), readFileSync(join(warm, file)).equals(expected)]).toEqual([file, true, true]);
    }
    for (const blob of blobsOf(image)) expect(sha256Digest(readFileSync(join(warm, blob.digest.slice('sha256:'.length))))).toBe(blob.digest);

    // Every blob byte of the warm pull came from nginx's file, none through the app.
    const total = blobsOf(image).reduce((sum, b) => sum + b.size, 0);
    expect(await metricValue(app, BYTES_SERVED, { source: 'x-accel' })).toBe(offloadedBefore + total);
    // The app sent the manifest itself, and nothing else.
    expect(await metricValue(app, BYTES_SERVED, { source: 'cache' })).toBe(cacheBefore + image.manifest.length);
    const blobLines = front
      .accessLog()
      .slice(logBefore)
      .filter((line) => / GET \S+\/blobs\/sha256:/.test(line));
    expect(blobLines.map((line) => line.split(' ').slice(0, 2).join(' ')).sort()).toEqual(
      blobsOf(image)
        .map((b) => `200 ${b.size}`)
        .sort(),
    );
  }, 180_000);

  podmanIt(
    'podman pulls the warm image through nginx',
    async () => {
      const root = tempDir();
      const env = { ...process.env, REGISTRY_AUTH_FILE: `${root}-auth.json` };
      const storage = ['--root', join(root, 'storage'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs'];
      const offloadedBefore = await metricValue(app, BYTES_SERVED, { source: 'x-accel' });
      try {
        await run('podman', ['login', '--tls-verify=false', '-u', vr.pullUser.username, '-p', vr.pullUser.token, prefixVia(vr)], { env, timeout: 60_000 });
        await run('podman', [...storage, 'pull', '--tls-verify=false', `${prefixVia(vr)}/library/offload:latest`], { env, timeout: 120_000 });
        const { stdout } = await run('podman', [...storage, 'images', '--format', '{{.Digest}}'], { env });
        expect(stdout).toContain(image.digest);
      } finally {
        await run('podman', [...storage, 'rmi', '--all', '--force'], { env }).catch(() => undefined);
        rmSync(`${root}-auth.json`, { force: true });
      }
      expect(await metricValue(app, BYTES_SERVED, { source: 'x-accel' })).toBe(offloadedBefore + blobsOf(image).reduce((sum, b) => sum + b.size, 0));
    },
    180_000,
  );

  it('a ranged GET of a hit returns the exact bytes (nginx does the range), with the blob headers of the app', async () => {
    const layer = image.layers[1];
    const bytes = readFileSync(join(app.dataDir, 'blobs', blobContentPath(layer.digest)));
    const token = await pullToken(app, vr, 'library/offload');
    const path = blobPath(vr, 'library/offload', layer.digest);
    const offloadedBefore = await metricValue(app, BYTES_SERVED, { source: 'x-accel' });

    const ranged = await fetch(`${front.url}${path}`, { headers: { authorization: `Bearer ${token}`, range: 'bytes=1000-200999' } });
    const body = Buffer.from(await ranged.arrayBuffer());
    expect(ranged.status).toBe(206);
    expect(body.equals(bytes.subarray(1000, 201000))).toBe(true);
    expect(ranged.headers.get('content-range')).toBe(`bytes 1000-200999/${layer.size}`);
    expect(ranged.headers.get('docker-content-digest')).toBe(layer.digest);

    const whole = await fetch(`${front.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    expect(sha256Digest(Buffer.from(await whole.arrayBuffer()))).toBe(layer.digest);
    expect({
      status: whole.status,
      length: whole.headers.get('content-length'),
      type: whole.headers.get('content-type'),
      digest: whole.headers.get('docker-content-digest'),
      etag: whole.headers.get('etag'),
      ranges: whole.headers.get('accept-ranges'),
      api: whole.headers.get('docker-distribution-api-version'),
      redirect: whole.headers.get('x-accel-redirect'),
    }).toEqual({
      status: 200,
      length: String(layer.size),
      type: 'application/octet-stream',
      digest: layer.digest,
      etag: `"${layer.digest}"`,
      ranges: 'bytes',
      api: 'registry/2.0',
      redirect: null,
    });
    expect(await metricValue(app, BYTES_SERVED, { source: 'x-accel' })).toBe(offloadedBefore + 200_000 + layer.size);

    // Past the end: the app answers 416 itself, as without nginx.
    const unsatisfiable = await fetch(`${front.url}${path}`, { headers: { authorization: `Bearer ${token}`, range: `bytes=${layer.size}-` } });
    expect(unsatisfiable.status).toBe(416);
    // HEAD stays in the app.
    const head = await fetch(`${front.url}${path}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
    expect([head.status, head.headers.get('content-length'), head.headers.get('docker-content-digest')]).toEqual([200, String(layer.size), layer.digest]);
  }, 60_000);

  it('a cold GET through nginx streams from the upstream (first byte before the fill ends), gets cached, and the next one is offloaded', async () => {
    const blob = await pushLargeBlob(upstream.url, 'team/cold', 40 * MiB, 'offload-cold');
    // a slow upstream (16 MiB/s): the fill takes about 2.5 s
    faulty.set({ kind: 'throttle', bytesPerSecond: 16 * MiB }, { method: 'GET', path: /\/blobs\// });
    try {
      const slow = await createVirtualRegistry(app, [{ url: faulty.url }]);
      const token = await pullToken(app, slow, 'team/cold');
      const suffix = `/team/cold/blobs/${blob.digest}`;
      let rowsAtFirstByte: Promise<number> = Promise.resolve(-1);
      const cold = await streamDownload(front.url, blobPath(slow, 'team/cold', blob.digest), {
        headers: { authorization: `Bearer ${token}` },
        onFirstByte: () => {
          rowsAtFirstByte = liveCacheEntryRows(app, suffix, slow.upstreamIds).then((rows) => rows.length);
        },
      });
      expect(outcome(cold)).toBe(`200 complete ${blob.size}/${blob.size} ${blob.digest}`);
      // The first byte arrived while the fill was still running (no live entry yet), a good while before the last.
      expect(await rowsAtFirstByte).toBe(0);
      expect(cold.endedAt - cold.firstByteAt!).toBeGreaterThan(1000);
      expect(await waitForLiveRow(app, suffix, 10_000, slow.upstreamIds)).toBeDefined();

      const offloadedBefore = await metricValue(app, BYTES_SERVED, { source: 'x-accel' });
      const warm = await streamDownload(front.url, blobPath(slow, 'team/cold', blob.digest), { headers: { authorization: `Bearer ${token}` } });
      expect(outcome(warm)).toBe(`200 complete ${blob.size}/${blob.size} ${blob.digest}`);
      expect(await metricValue(app, BYTES_SERVED, { source: 'x-accel' })).toBe(offloadedBefore + blob.size);
      expect(faulty.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${blob.digest}`))).toHaveLength(1);
    } finally {
      faulty.forward();
    }
  }, 120_000);

  it('a revoked token gets 401 from the app and never a byte from nginx', async () => {
    const layer = image.layers[1];
    const path = blobPath(vr, 'library/offload', layer.digest);
    // A pull credential of its own, revoked below.
    const pat = await adminApi<{ token: string }>(app, 'POST', '/api/v4/user/personal_access_tokens', {
      name: 'revoked-later',
      scopes: ['read_virtual_registry'],
    });
    const token = await pullToken(app, { ...vr, pullUser: { username: 'root', token: pat.token } }, 'library/offload');
    const before = await fetch(`${front.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    expect([before.status, sha256Digest(Buffer.from(await before.arrayBuffer()))]).toEqual([200, layer.digest]);

    await adminApi(app, 'DELETE', `/api/v4/personal_access_tokens/${claims(token).credential.id}`);
    const offloadedBefore = await metricValue(app, BYTES_SERVED, { source: 'x-accel' });
    const logBefore = front.accessLog().length;
    const after = await rawRequest(front.url, 'GET', path, { authorization: `Bearer ${token}` });
    expect(after.status).toBe(401);
    expect((JSON.parse(after.body) as { errors: { code: string }[] }).errors[0].code).toBe('UNAUTHORIZED');
    expect(after.headers['docker-content-digest']).toBeUndefined();
    expect(after.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    // nginx passed the app's answer through (upstream status 401), and no file was sent.
    expect(front.accessLog().slice(logBefore)).toEqual([expect.stringMatching(/^401 \d+ GET \S+ upstream=401$/)]);
    expect(await metricValue(app, BYTES_SERVED, { source: 'x-accel' })).toBe(offloadedBefore);
    // Anonymous: the same.
    expect((await rawRequest(front.url, 'GET', path)).status).toBe(401);
  }, 60_000);

  it('the internal location answers 404 to a client asking for it directly, with or without credentials', async () => {
    const layer = image.layers[1];
    const token = await pullToken(app, vr, 'library/offload');
    const internal = `/_offload/blobs/${blobContentPath(layer.digest)}`;
    const attempts: Record<string, string>[] = [{}, { authorization: `Bearer ${token}` }, { 'x-accel-redirect': internal }];
    for (const headers of attempts) {
      const res = await rawRequest(front.url, 'GET', internal, headers);
      expect([JSON.stringify(headers), res.status, res.headers['docker-content-digest']]).toEqual([JSON.stringify(headers), 404, undefined]);
      expect(res.body).not.toContain(
        readFileSync(join(app.dataDir, 'blobs', blobContentPath(layer.digest)))
          .subarray(0, 64)
          .toString(),
      );
    }
    // Nor through a path that normalizes into it.
    expect((await rawRequest(front.url, 'GET', `/v2/../_offload/blobs/${blobContentPath(layer.digest)}`)).status).toBe(404);
  });

  it("a file gone between the app's check and nginx's open is a retryable 503, never a 404", async () => {
    // A second front reading another (empty) directory: the app finds the file, nginx does not.
    const elsewhere = mkdtempSync(join(tmpdir(), 'cvr-offload-empty-'));
    dirs.push(elsewhere);
    const blind = await startNginxFront({ apiUrl: app.url, blobRoot: elsewhere, binary: NGINX });
    try {
      const layer = image.layers[1];
      const token = await pullToken(app, vr, 'library/offload');
      const res = await rawRequest(blind.url, 'GET', blobPath(vr, 'library/offload', layer.digest), { authorization: `Bearer ${token}` });
      expect([res.status, res.headers['retry-after'], (JSON.parse(res.body) as { errors: { code: string }[] }).errors[0].code]).toEqual([
        503,
        '1',
        'UNAVAILABLE',
      ]);
    } finally {
      await blind.stop();
    }
  });

  it('a hit whose file was deleted by hand becomes a miss that refills (never a 404 from nginx)', async () => {
    const layer = image.layers[0];
    const path = blobPath(vr, 'library/offload', layer.digest);
    const suffix = `/library/offload/blobs/${layer.digest}`;
    expect(await liveCacheEntryRows(app, suffix, vr.upstreamIds)).toHaveLength(1);
    unlinkSync(join(app.dataDir, 'blobs', blobContentPath(layer.digest)));
    const mark = await upstream.mark();
    const token = await pullToken(app, vr, 'library/offload');

    const res = await streamDownload(front.url, path, { headers: { authorization: `Bearer ${token}` } });
    expect(outcome(res)).toBe(`200 complete ${layer.size}/${layer.size} ${layer.digest}`);
    expect((await upstream.requests(mark)).filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`))).toHaveLength(1);
    // Refilled: the file is back and the next GET is offloaded again.
    expect(await waitForLiveRow(app, suffix, 10_000, vr.upstreamIds)).toBeDefined();
    const again = await streamDownload(front.url, path, { headers: { authorization: `Bearer ${token}` } });
    expect(outcome(again)).toBe(`200 complete ${layer.size}/${layer.size} ${layer.digest}`);
  }, 60_000);
});
