/**
 * The per-replica memory caches of the pull path (MEMORY_CACHE_TTL_MS): a pull decision and a hot
 * manifest are remembered, and every change that could make them wrong forgets them before the change's
 * response leaves, on this replica at once and on the others through Redis. Requests that change nothing
 * (anonymous, refused, failed) forget nothing.
 */
import { createHash } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { jest } from '@jest/globals';
import { ProxyBlobStore } from '../src/proxy/proxy-blob-store.js';
import { ProxyManifestStore } from '../src/proxy/proxy-manifest-store.js';
import { RegistryPullController } from '../src/proxy/registry-pull.controller.js';
import { blobContentPath } from '../src/storage/blob-store.js';
import { accessLog } from './support/access-log.js';
import { AdminApi, eventually } from './support/admin-api.js';
import { liveCacheEntryRows, metricValue, waitForLiveRow } from './support/cache-observation.js';
import { buildDockerImage, pushImage, type ImageManifestFixture } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { adminApi, createVirtualRegistry, pullToken, type VirtualRegistry } from './support/virtual-registry.js';

const canRun = realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry is not installed; bash .ci/install-packages.sh)';

const MANIFEST_ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json';

function manifestUrl(app: TestApp, vr: VirtualRegistry, name: string, reference: string): string {
  return `${app.url}/v2/virtual_registries/containers/${vr.registryId}/${name}/manifests/${reference}`;
}

async function getManifest(
  app: TestApp,
  vr: VirtualRegistry,
  name: string,
  reference: string,
  token: string,
): Promise<{ status: number; body: Buffer; digest: string | null }> {
  const res = await fetch(manifestUrl(app, vr, name, reference), { headers: { authorization: `Bearer ${token}`, accept: MANIFEST_ACCEPT } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest') };
}

/** Response headers without those that differ on every answer. */
function withoutPerRequest(headers: Headers): Record<string, string> {
  const kept = Object.fromEntries(headers.entries());
  for (const name of ['date', 'x-request-id', 'connection', 'keep-alive']) delete kept[name];
  return kept;
}

async function memoryHits(app: TestApp, cache: 'manifest' | 'authorization' | 'registry' | 'credential' | 'blob'): Promise<number> {
  return metricValue(app, 'registry_memory_cache_requests_total', { cache, result: 'hit' });
}

async function anonymousPost(url: string): Promise<number> {
  const res = await fetch(url, { method: 'POST', body: '{"name":"x","path":"x"}', headers: { 'content-type': 'application/json' } });
  await res.arrayBuffer();
  return res.status;
}

/** A fresh personal access token of root with read_virtual_registry, and a registry JWT minted from it. */
async function freshPullCredential(app: TestApp, vr: VirtualRegistry, name: string): Promise<{ patId: number; jwt: string }> {
  const pat = await adminApi<{ id: number; token: string }>(app, 'POST', '/api/v4/user/personal_access_tokens', {
    name: `memory-${Date.now()}`,
    scopes: ['read_virtual_registry'],
  });
  const jwt = await pullToken(app, { ...vr, pullUser: { username: 'root', token: pat.token } }, name);
  return { patId: pat.id, jwt };
}

suite(`memory caches of the pull path${reason}`, () => {
  let upstream: UpstreamRegistry;
  let image: ImageManifestFixture;
  let app: TestApp;

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    image = await buildDockerImage({ seed: 'memory-cache' });
    await pushImage(upstream.url, 'team/app', '1.0', image);
    app = await startTestApp();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await upstream?.stop();
  });

  it('serves a tag pulled again within its window from memory: same bytes, no upstream request, download still counted', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/app');
    const first = await getManifest(app, vr, 'team/app', '1.0', token);
    expect([first.status, first.digest]).toEqual([200, image.digest]);
    expect(first.body.equals(image.manifest)).toBe(true);

    const mark = await upstream.mark();
    const hitsBefore = await memoryHits(app, 'manifest');
    const authHitsBefore = await memoryHits(app, 'authorization');
    for (let i = 0; i < 5; i++) {
      const again = await getManifest(app, vr, 'team/app', '1.0', token);
      expect([again.status, again.digest]).toEqual([200, image.digest]);
      expect(again.body.equals(image.manifest)).toBe(true);
    }
    expect(await memoryHits(app, 'manifest')).toBeGreaterThanOrEqual(hitsBefore + 4);
    expect(await memoryHits(app, 'authorization')).toBeGreaterThanOrEqual(authHitsBefore + 5);
    expect(accessLog.manifestRequests(await upstream.requests(mark), 'team/app')).toEqual([]);

    const head = await fetch(manifestUrl(app, vr, 'team/app', '1.0'), { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
    expect([head.status, head.headers.get('docker-content-digest'), head.headers.get('content-length')]).toEqual([
      200,
      image.digest,
      String(image.manifest.length),
    ]);

    // downloads are still counted (written in batches about a second later)
    await eventually(async () => {
      const [row] = (await app.app
        .get(DataSource)
        .query(`SELECT downloads_count FROM cache_entries WHERE upstream_id = $1 AND relative_path = '/team/app/manifests/1.0' AND status = 'default'`, [
          vr.upstreamIds[0],
        ])) as { downloads_count: string }[];
      return row && Number(row.downloads_count) >= 7;
    });
  });

  it('answers a remembered manifest pull before the framework, as the full path does: headers, body, HEAD, request id, metrics, counts', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/app');
    const headers = { authorization: `Bearer ${token}`, accept: MANIFEST_ACCEPT };
    const url = manifestUrl(app, vr, 'team/app', '1.0');
    const mirrorUrl = `${app.url}/virtual_registries/containers/${vr.registryId}/v2/team/app/manifests/1.0`;
    const fullPath = jest.spyOn(app.app.get(ProxyManifestStore), 'manifest');
    try {
      expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200); // from the upstream
      const stored = await fetch(url, { headers }); // from storage, through the framework; remembered from now on
      const storedBody = Buffer.from(await stored.arrayBuffer());
      expect(fullPath).toHaveBeenCalledTimes(2);

      const route = { method: 'GET', status: '200', route: '/v2/virtual_registries/:spelling/*' };
      const mirrorRoute = { ...route, route: '/virtual_registries/:spelling/*' };
      const before = {
        requests: await metricValue(app, 'http_requests_total', route),
        mirrorRequests: await metricValue(app, 'http_requests_total', mirrorRoute),
        manifestHits: await memoryHits(app, 'manifest'),
        authorizationHits: await memoryHits(app, 'authorization'),
        misses: await metricValue(app, 'registry_memory_cache_requests_total', { result: 'miss' }),
        cacheHits: await metricValue(app, 'registry_cache_requests_total', { result: 'hit', kind: 'manifest' }),
      };
      const early = await fetch(url, { headers: { ...headers, 'x-request-id': 'early-1' } });
      const earlyBody = Buffer.from(await early.arrayBuffer());
      const mirror = await fetch(mirrorUrl, { headers });
      const mirrorBody = Buffer.from(await mirror.arrayBuffer());
      const head = await fetch(url, { method: 'HEAD', headers });
      expect(fullPath).toHaveBeenCalledTimes(2); // none of the three went through the framework

      expect([early.status, earlyBody.equals(storedBody), earlyBody.equals(image.manifest)]).toEqual([200, true, true]);
      expect(withoutPerRequest(early.headers)).toEqual(withoutPerRequest(stored.headers));
      expect(early.headers.get('x-request-id')).toBe('early-1');
      expect(stored.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect([mirror.status, mirrorBody.equals(image.manifest)]).toEqual([200, true]);
      expect(withoutPerRequest(mirror.headers)).toEqual(withoutPerRequest(stored.headers));
      expect([head.status, (await head.arrayBuffer()).byteLength]).toEqual([200, 0]);
      expect(withoutPerRequest(head.headers)).toEqual(withoutPerRequest(stored.headers));

      // Each answer counted once, under the route that would have served it; nothing counted as a miss.
      expect(await metricValue(app, 'http_requests_total', route)).toBe(before.requests + 1); // HEAD is its own method
      expect(await metricValue(app, 'http_requests_total', { ...route, method: 'HEAD' })).toBeGreaterThanOrEqual(1);
      expect(await metricValue(app, 'http_requests_total', mirrorRoute)).toBe(before.mirrorRequests + 1);
      expect(await memoryHits(app, 'manifest')).toBe(before.manifestHits + 3);
      expect(await memoryHits(app, 'authorization')).toBe(before.authorizationHits + 3);
      expect(await metricValue(app, 'registry_memory_cache_requests_total', { result: 'miss' })).toBe(before.misses);
      expect(await metricValue(app, 'registry_cache_requests_total', { result: 'hit', kind: 'manifest' })).toBe(before.cacheHits + 3);

      // Another credential (not remembered yet) and a bad reference take the full path.
      const other = await freshPullCredential(app, vr, 'team/app');
      expect((await getManifest(app, vr, 'team/app', '1.0', other.jwt)).status).toBe(200);
      expect((await getManifest(app, vr, 'team/app', 'sha256:nothex', token)).status).toBe(400);
      expect(fullPath).toHaveBeenCalledTimes(3);
    } finally {
      fullPath.mockRestore();
    }
  });

  it('answers a remembered blob pull before the framework, as the full path does: body, Range, HEAD, request id, metrics, counts', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/app');
    const layer = image.layers[0];
    const url = `${app.url}/v2/virtual_registries/containers/${vr.registryId}/team/app/blobs/${layer.digest}`;
    const headers = { authorization: `Bearer ${token}` };
    const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const fullPath = jest.spyOn(app.app.get(ProxyBlobStore), 'blob');
    try {
      expect((await (await fetch(url, { headers })).arrayBuffer()).byteLength).toBe(layer.size); // from the upstream
      expect(await waitForLiveRow(app, `/team/app/blobs/${layer.digest}`, 30_000, vr.upstreamIds)).toBeDefined();
      const stored = await fetch(url, { headers }); // from storage, through the framework; remembered from now on
      const storedBody = Buffer.from(await stored.arrayBuffer());
      expect([stored.status, sha256(storedBody)]).toEqual([200, layer.digest]);
      expect(fullPath).toHaveBeenCalledTimes(2);

      const route = { method: 'GET', status: '200', route: '/v2/virtual_registries/:spelling/*' };
      const before = {
        requests: await metricValue(app, 'http_requests_total', route),
        ranges: await metricValue(app, 'http_requests_total', { ...route, status: '206' }),
        blobHits: await memoryHits(app, 'blob'),
        authorizationHits: await memoryHits(app, 'authorization'),
        misses: await metricValue(app, 'registry_memory_cache_requests_total', { result: 'miss' }),
        cacheHits: await metricValue(app, 'registry_cache_requests_total', { result: 'hit', kind: 'blob' }),
      };
      const early = await fetch(url, { headers: { ...headers, 'x-request-id': 'early-blob-1' } });
      const earlyBody = Buffer.from(await early.arrayBuffer());
      const range = await fetch(url, { headers: { ...headers, range: 'bytes=5-104' } });
      const rangeBody = Buffer.from(await range.arrayBuffer());
      const head = await fetch(url, { method: 'HEAD', headers });
      expect(fullPath).toHaveBeenCalledTimes(2); // none of the three went through the framework

      expect([early.status, sha256(earlyBody)]).toEqual([200, layer.digest]);
      expect(withoutPerRequest(early.headers)).toEqual(withoutPerRequest(stored.headers));
      expect(early.headers.get('x-request-id')).toBe('early-blob-1');
      expect([range.status, range.headers.get('content-range'), rangeBody.equals(storedBody.subarray(5, 105))]).toEqual([
        206,
        `bytes 5-104/${layer.size}`,
        true,
      ]);
      expect([head.status, head.headers.get('content-length'), (await head.arrayBuffer()).byteLength]).toEqual([200, String(layer.size), 0]);
      expect(withoutPerRequest(head.headers)).toEqual(withoutPerRequest(stored.headers));

      // Each answer counted once, under the route that would have served it; nothing counted as a miss.
      // (recorded once each response has ended, as Fastify's onResponse does)
      await eventually(async () => (await metricValue(app, 'http_requests_total', { ...route, status: '206' })) === before.ranges + 1);
      expect(await metricValue(app, 'http_requests_total', route)).toBe(before.requests + 1);
      expect(await memoryHits(app, 'blob')).toBe(before.blobHits + 3);
      expect(await memoryHits(app, 'authorization')).toBe(before.authorizationHits + 3);
      expect(await metricValue(app, 'registry_memory_cache_requests_total', { result: 'miss' })).toBe(before.misses);
      expect(await metricValue(app, 'registry_cache_requests_total', { result: 'hit', kind: 'blob' })).toBe(before.cacheHits + 3);

      // Another credential (not remembered yet) takes the full path.
      const other = await freshPullCredential(app, vr, 'team/app');
      const otherRes = await fetch(url, { headers: { authorization: `Bearer ${other.jwt}` } });
      expect([otherRes.status, sha256(Buffer.from(await otherRes.arrayBuffer()))]).toEqual([200, layer.digest]);
      expect(fullPath).toHaveBeenCalledTimes(3);
    } finally {
      fullPath.mockRestore();
    }
  });

  it('leaves a pull to the full path when answering it from memory fails', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/app');
    for (let i = 0; i < 2; i++) expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200);
    const early = jest.spyOn(app.app.get(RegistryPullController), 'rememberedAnswer').mockImplementationOnce(() => {
      throw new Error('a bug in the early answer');
    });
    try {
      const res = await getManifest(app, vr, 'team/app', '1.0', token);
      expect([res.status, res.digest, res.body.equals(image.manifest)]).toEqual([200, image.digest, true]);
      expect(early).toHaveBeenCalledTimes(1);
    } finally {
      early.mockRestore();
    }
  });

  it('leaves every pull to the framework while PULL_RATE_LIMIT_PER_MINUTE counts requests', async () => {
    const limited = await startTestApp({ PULL_RATE_LIMIT_PER_MINUTE: '4' });
    try {
      const vr = await createVirtualRegistry(limited, [{ url: upstream.url }]);
      const token = await pullToken(limited, vr, 'team/app');
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await getManifest(limited, vr, 'team/app', '1.0', token)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
    } finally {
      await limited.close();
    }
  }, 120_000); // boots a second app on the embedded database

  it('refuses the very next pull once the token behind the JWT is revoked through the admin API', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const { patId, jwt } = await freshPullCredential(app, vr, 'team/app');
    expect((await getManifest(app, vr, 'team/app', '1.0', jwt)).status).toBe(200);
    expect((await getManifest(app, vr, 'team/app', '1.0', jwt)).status).toBe(200);
    await adminApi(app, 'DELETE', `/api/v4/personal_access_tokens/${patId}`);
    expect((await getManifest(app, vr, 'team/app', '1.0', jwt)).status).toBe(401);
  });

  it("reads neither the credential nor the registry for a client's next token (its next pull), and refuses a revoked token at the token endpoint at once", async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const pat = await adminApi<{ id: number; token: string }>(app, 'POST', '/api/v4/user/personal_access_tokens', {
      name: `memory-next-${Date.now()}`,
      scopes: ['read_virtual_registry'],
    });
    const client = { ...vr, pullUser: { username: 'root', token: pat.token } };
    const first = await pullToken(app, client, 'team/app');
    expect((await getManifest(app, vr, 'team/app', '1.0', first)).status).toBe(200);

    const credentialHits = await memoryHits(app, 'credential');
    const registryHits = await memoryHits(app, 'registry');
    const second = await pullToken(app, client, 'team/app'); // the login: the secret is remembered
    expect(second).not.toBe(first);
    expect((await getManifest(app, vr, 'team/app', '1.0', second)).status).toBe(200); // a new JWT: its credential and registry are remembered
    expect(await memoryHits(app, 'credential')).toBe(credentialHits + 2);
    expect(await memoryHits(app, 'registry')).toBe(registryHits + 1);

    await adminApi(app, 'DELETE', `/api/v4/personal_access_tokens/${pat.id}`);
    await expect(pullToken(app, client, 'team/app')).rejects.toThrow(/-> 401/);
    expect((await getManifest(app, vr, 'team/app', '1.0', second)).status).toBe(401);
  });

  it('serves a blob pulled again from memory (no cache-entry read), forgets it when its object vanishes or the cache is purged', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/app');
    const layer = image.layers[0];
    const suffix = `/team/app/blobs/${layer.digest}`;
    const getBlob = async () => {
      const res = await fetch(`${app.url}/v2/virtual_registries/containers/${vr.registryId}/team/app/blobs/${layer.digest}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = Buffer.from(await res.arrayBuffer());
      const received = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      return { status: res.status, digest: res.headers.get('docker-content-digest'), same: received === layer.digest && body.length === layer.size };
    };
    const blobGets = async (mark: number) =>
      (await upstream.requests(mark)).filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`)).length;

    expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true }); // cold: filled
    expect(await waitForLiveRow(app, suffix, 30_000, vr.upstreamIds)).toBeDefined();
    expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true }); // a hit, read from the database
    const hitsBefore = await memoryHits(app, 'blob');
    let mark = await upstream.mark();
    for (let i = 0; i < 3; i++) expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true });
    expect(await memoryHits(app, 'blob')).toBe(hitsBefore + 3);
    expect(await blobGets(mark)).toBe(0);

    // The object is deleted by hand: the remembered entry leads to it once, then the request is a miss that refills.
    unlinkSync(join(app.dataDir, 'blobs', blobContentPath(layer.digest)));
    mark = await upstream.mark();
    expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true });
    expect(await blobGets(mark)).toBe(1);
    expect(await waitForLiveRow(app, suffix, 30_000, vr.upstreamIds)).toBeDefined();
    expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true });
    expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true });

    // A purge forgets it on this replica before its response leaves: the next GET asks the upstream again.
    await adminApi(app, 'DELETE', `/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[0]}/cache`);
    await eventually(async () => (await liveCacheEntryRows(app, suffix, vr.upstreamIds)).length === 0);
    mark = await upstream.mark();
    expect(await getBlob()).toEqual({ status: 200, digest: layer.digest, same: true });
    expect(await blobGets(mark)).toBe(1);
  });

  it('stops serving a remembered tag as soon as its only upstream is unlinked, and goes upstream again after a purge', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const token = await pullToken(app, vr, 'team/app');
    expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200);
    expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200);

    // purge: the entries are marked by a job; the next pull asks the upstream again
    await adminApi(app, 'DELETE', `/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[0]}/cache`);
    await eventually(async () => (await liveCacheEntryRows(app, '/team/app/manifests/1.0', vr.upstreamIds)).length === 0);
    const mark = await upstream.mark();
    expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200);
    expect(accessLog.manifestRequests(await upstream.requests(mark), 'team/app', '1.0').length).toBeGreaterThan(0);
    expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200);

    const registry = await adminApi<{ registry_upstreams: { id: number }[] }>(app, 'GET', `/api/v4/virtual_registries/container/registries/${vr.registryId}`);
    await adminApi(app, 'DELETE', `/api/v4/virtual_registries/container/registry_upstreams/${registry.registry_upstreams[0].id}`);
    expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(404);
  });

  it('keeps serving a hot tag from memory while anonymous and failing requests hammer the admin API', async () => {
    // a long memory window, so every pull after the first is a hit unless something clears the caches
    const hot = await startTestApp({ MEMORY_CACHE_TTL_MS: '120000' });
    try {
      const vr = await createVirtualRegistry(hot, [{ url: upstream.url }]);
      const token = await pullToken(hot, vr, 'team/app');
      const admin = new AdminApi(hot.url);
      expect((await getManifest(hot, vr, 'team/app', '1.0', token)).status).toBe(200);
      // the first pull fills the cache; the tag is remembered once a pull has read the committed entry
      await eventually(async () => {
        const before = await memoryHits(hot, 'manifest');
        expect((await getManifest(hot, vr, 'team/app', '1.0', token)).status).toBe(200);
        return (await memoryHits(hot, 'manifest')) > before;
      });
      const hitsBefore = await memoryHits(hot, 'manifest');
      const authHitsBefore = await memoryHits(hot, 'authorization');

      const junk: Promise<number>[] = [];
      const statuses = new Map<number, number>();
      let pulls = 0;
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 50; i++) junk.push(anonymousPost(`${hot.url}/api/v4/x`));
        for (let i = 0; i < 5; i++) junk.push(anonymousPost(`${hot.url}/api/v4/groups`));
        // authenticated, but failing: nothing to change (400), nothing to revoke (404)
        junk.push(admin.patch(`/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[0]}`, {}).then((r) => r.status));
        junk.push(admin.delete('/api/v4/personal_access_tokens/987654321').then((r) => r.status));
        for (const status of await Promise.all(junk.splice(0))) statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const again = await getManifest(hot, vr, 'team/app', '1.0', token);
        expect([again.status, again.digest]).toEqual([200, image.digest]);
        pulls++;
      }
      expect(Object.fromEntries(statuses)).toEqual({ 404: 1000 + 20, 401: 100, 400: 20 });
      expect(await memoryHits(hot, 'manifest')).toBe(hitsBefore + pulls);
      expect(await memoryHits(hot, 'authorization')).toBe(authHitsBefore + pulls);
    } finally {
      await hot.close();
    }
  }, 120_000);

  it('refuses the very next pull once its user is blocked or loses its membership, or its group is deleted', async () => {
    const vr = await createVirtualRegistry(app, [{ url: upstream.url }]);
    const admin = new AdminApi(app.url);
    const pullAs = async (username: string) => {
      const secret = await admin.createUserToken(username, { groupId: vr.groupId, role: 'guest' }, ['read_virtual_registry']);
      return pullToken(app, { ...vr, pullUser: { username, token: secret } }, 'team/app');
    };
    const userId = async (username: string) => (await admin.get(`/api/v4/users?username=${username}`)).body[0].id as number;

    const blocked = `blocked-${Date.now()}`;
    const blockedJwt = await pullAs(blocked);
    for (let i = 0; i < 2; i++) expect((await getManifest(app, vr, 'team/app', '1.0', blockedJwt)).status).toBe(200);
    await admin.expect(201, 'POST', `/api/v4/users/${await userId(blocked)}/block`);
    expect((await getManifest(app, vr, 'team/app', '1.0', blockedJwt)).status).toBe(401);

    const removed = `removed-${Date.now()}`;
    const removedJwt = await pullAs(removed);
    for (let i = 0; i < 2; i++) expect((await getManifest(app, vr, 'team/app', '1.0', removedJwt)).status).toBe(200);
    await admin.expect(204, 'DELETE', `/api/v4/groups/${vr.groupId}/members/${await userId(removed)}`);
    expect((await getManifest(app, vr, 'team/app', '1.0', removedJwt)).status).toBe(404);

    const token = await pullToken(app, vr, 'team/app');
    for (let i = 0; i < 2; i++) expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(200);
    await admin.expect(204, 'DELETE', `/api/v4/groups/${vr.groupId}`);
    expect((await getManifest(app, vr, 'team/app', '1.0', token)).status).toBe(404);
  }, 60_000);

  it('remembers nothing with MEMORY_CACHE_TTL_MS=0', async () => {
    const off = await startTestApp({ MEMORY_CACHE_TTL_MS: '0' });
    try {
      const vr = await createVirtualRegistry(off, [{ url: upstream.url }]);
      const token = await pullToken(off, vr, 'team/app');
      for (let i = 0; i < 3; i++) expect((await getManifest(off, vr, 'team/app', '1.0', token)).status).toBe(200);
      expect(await metricValue(off, 'registry_memory_cache_requests_total')).toBe(0);
    } finally {
      await off.close();
    }
  }, 120_000); // boots a second app on the embedded database

  const withServices = process.env.DATABASE_URL && process.env.REDIS_URL ? it : it.skip;
  withServices(
    'tells the other replicas through Redis: a token revoked on one is refused on the other at once (skipped without Postgres and Redis)',
    async () => {
      const redis = { REDIS_URL: process.env.REDIS_URL };
      const first = await startTestApp(redis, { database: 'postgres' });
      const second = await startTestApp(redis, { replicaOf: first });
      try {
        const vr = await createVirtualRegistry(first, [{ url: upstream.url }]);
        const { patId, jwt } = await freshPullCredential(first, vr, 'team/app');
        for (let i = 0; i < 3; i++) expect((await getManifest(second, vr, 'team/app', '1.0', jwt)).status).toBe(200);
        expect(await memoryHits(second, 'authorization')).toBeGreaterThanOrEqual(2);

        await adminApi(first, 'DELETE', `/api/v4/personal_access_tokens/${patId}`);
        const refusedAfter = Date.now();
        await eventually(async () => (await getManifest(second, vr, 'team/app', '1.0', jwt)).status === 401, 2000);
        expect(Date.now() - refusedAfter).toBeLessThan(2000);
      } finally {
        await second.close();
        await first.close();
      }
    },
    60_000,
  );
});
