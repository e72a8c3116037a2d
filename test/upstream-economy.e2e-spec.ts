/**
 * Upstream economy (issue 15) end to end, against real upstream registries (Debian's docker-registry)
 * behind a small recording proxy (support/faulty-upstream.ts) that adds Docker Hub's rate-limit headers,
 * answers 429, or hangs; and a real client (skopeo) for the prefetch.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AdminApi, eventually } from './support/admin-api.js';
import { backdateTagCheck, metricValue } from './support/cache-observation.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildDockerImage, buildImageIndex, imageBlobs, pushImage, type ImageIndexFixture } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { adminApi, createVirtualRegistry, pullToken, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry or skopeo is not installed; bash .ci/install-packages.sh)';

const HEADERS_TIMEOUT_MS = 1500;
const COOLDOWN_MS = 2000;

interface PrefetchAnswer {
  id: number;
  status: string;
  images: { repository: string; reference: string; status: string; reason: string | null; manifests: number; blobs: number }[];
}

interface UpstreamDetail {
  rate_limit: {
    limit: number | null;
    remaining: number | null;
    window_seconds: number | null;
    source: string | null;
    seen_at: string | null;
    paused_until: string | null;
  };
  circuit_breaker: { state: string; consecutive_failures: number; open_until: string | null };
}

suite(`upstream economy${reason}`, () => {
  let app: TestApp;
  let upstream: UpstreamRegistry;
  let second: UpstreamRegistry;
  const proxies: FaultyUpstream[] = [];
  const dirs: string[] = [];

  const proxy = async (target: UpstreamRegistry): Promise<FaultyUpstream> => {
    const p = await startFaultyUpstream(target.url);
    proxies.push(p);
    return p;
  };
  /** What reached a proxy after `mark` (an index into its request list). */
  const since = (p: FaultyUpstream, mark: number) => p.requests.slice(mark);
  const manifestGets = (p: FaultyUpstream, mark: number) => since(p, mark).filter((r) => r.method === 'GET' && r.path.includes('/manifests/'));
  const upstreamDetail = (id: number) => adminApi<UpstreamDetail>(app, 'GET', `/api/v4/virtual_registries/container/upstreams/${id}`);
  const digestOf = async (vr: VirtualRegistry, name: string, ref: string): Promise<{ status: number; digest: string | null }> => {
    const res = await registryFetch(app, vr, name, `manifests/${ref}`);
    await res.arrayBuffer();
    return { status: res.status, digest: res.headers.get('docker-content-digest') };
  };
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'cvr-economy-'));
    dirs.push(d);
    rmSync(d, { recursive: true });
    return d;
  };
  const skopeoCopyAll = (vr: VirtualRegistry, ref: string) =>
    run(
      'skopeo',
      [
        'copy',
        '--all',
        '--src-tls-verify=false',
        '--src-creds',
        `${vr.pullUser.username}:${vr.pullUser.token}`,
        `docker://${vr.imagePrefix}/${ref}`,
        `dir:${tempDir()}`,
      ],
      { timeout: 120_000 },
    );
  const prefetchDone = (vr: VirtualRegistry, id: number) =>
    eventually(async () => {
      const p = await adminApi<PrefetchAnswer>(app, 'GET', `/api/v4/virtual_registries/container/registries/${vr.registryId}/prefetch/${id}`);
      return p.status !== 'pending' && p;
    }, 60_000);

  beforeAll(async () => {
    [upstream, second] = await Promise.all([startUpstreamRegistry(), startUpstreamRegistry()]);
    // with REDIS_URL and DATABASE_URL (CI), prefetch jobs run on BullMQ and state lives in Postgres
    app = await startTestApp(
      {
        UPSTREAM_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
        UPSTREAM_BREAKER_FAILURES: '3',
        UPSTREAM_BREAKER_COOLDOWN_MS: String(COOLDOWN_MS),
        UPSTREAM_RATELIMIT_RESERVE: '10',
        UPSTREAM_NEGATIVE_CACHE_MS: '30000',
        ...(realServices.redisUrl ? { REDIS_URL: realServices.redisUrl } : {}),
      },
      { database: realServices.postgresUrl ? 'postgres' : 'embedded' },
    );
  }, 120_000);

  // The faulty upstreams close first, so nothing the app still has in flight waits on one of them. In
  // some runs app.close() took 35-60 s after all tests had passed (session 8): a connection the test's
  // client had opened and not used yet held the HTTP server's close until Node's headers timeout. A closing
  // server now closes such connections too (ServerConnections.closeIdle), so Jest's 60 s is plenty.
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await app?.close();
    await Promise.all([upstream?.close(), second?.close()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("reads Docker Hub's rate-limit headers into /metrics and the admin API; under the reserve a changed tag is served stale with no manifest GET", async () => {
    const old = await buildDockerImage({ seed: 'economy-budget-old' });
    await pushImage(upstream.url, 'budget/app', 'latest', old);
    const hub = await proxy(upstream);
    hub.addHeaders({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600', 'docker-ratelimit-source': '203.0.113.7' });
    const vr = await createVirtualRegistry(app, [{ url: hub.url }]);
    const [id] = vr.upstreamIds;

    expect(await digestOf(vr, 'budget/app', 'latest')).toEqual({ status: 200, digest: old.digest });
    expect(await metricValue(app, 'registry_upstream_ratelimit_remaining', { upstream: String(id) })).toBe(76);
    expect(await metricValue(app, 'registry_upstream_ratelimit_limit', { upstream: String(id) })).toBe(100);
    const detail = await upstreamDetail(id);
    expect(detail.rate_limit).toMatchObject({ limit: 100, remaining: 76, window_seconds: 21600, source: '203.0.113.7', paused_until: null });
    expect(Date.now() - Date.parse(detail.rate_limit.seen_at!)).toBeLessThan(60_000);

    // the tag moves upstream while the budget runs low
    const moved = await buildDockerImage({ seed: 'economy-budget-new' });
    await pushImage(upstream.url, 'budget/app', 'latest', moved);
    hub.addHeaders({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '4;w=21600', 'docker-ratelimit-source': '203.0.113.7' });
    await backdateTagCheck(app, '/budget/app/manifests/latest');
    const stale = await metricValue(app, 'registry_cache_requests_total', { result: 'stale', kind: 'manifest' });
    const mark = hub.requests.length;
    expect(await digestOf(vr, 'budget/app', 'latest')).toEqual({ status: 200, digest: old.digest });
    expect(since(hub, mark).map((r) => `${r.method} ${r.path}`)).toEqual(['HEAD /v2/budget/app/manifests/latest']);
    expect(await metricValue(app, 'registry_cache_requests_total', { result: 'stale', kind: 'manifest' })).toBe(stale + 1);
    expect(await metricValue(app, 'registry_upstream_ratelimit_spared_total', { upstream: String(id) })).toBe(1);
    expect((await upstreamDetail(id)).rate_limit.remaining).toBe(4);

    // with budget again, the revalidation fetches the new manifest
    hub.addHeaders({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '90;w=21600' });
    await backdateTagCheck(app, '/budget/app/manifests/latest');
    expect(await digestOf(vr, 'budget/app', 'latest')).toEqual({ status: 200, digest: moved.digest });
  }, 60_000);

  it('a 429 with Retry-After stops GETs to that upstream until then (HEADs still go), and GETs resume afterwards', async () => {
    const image = await buildDockerImage({ seed: 'economy-429' });
    await pushImage(upstream.url, 'limited/app', 'v1', image);
    await pushImage(upstream.url, 'limited/later', 'v1', image);
    const hub = await proxy(upstream);
    const vr = await createVirtualRegistry(app, [{ url: hub.url }]);
    const [id] = vr.upstreamIds;

    hub.set({ kind: 'status', status: 429, retryAfterSeconds: 30 }, { method: 'GET' });
    expect((await digestOf(vr, 'limited/app', 'v1')).status).toBe(503);
    expect(manifestGets(hub, 0)).toHaveLength(1);
    hub.forward();
    const mark = hub.requests.length;
    for (let i = 0; i < 5; i++) expect((await digestOf(vr, 'limited/app', 'v1')).status).toBe(503);
    expect((await digestOf(vr, 'limited/later', 'v1')).status).toBe(503);
    expect(since(hub, mark).filter((r) => r.method === 'GET')).toEqual([]);
    const paused = Date.parse((await upstreamDetail(id)).rate_limit.paused_until!);
    expect(paused).toBeGreaterThan(Date.now() + 25_000);
    expect(paused).toBeLessThanOrEqual(Date.now() + 30_000);
    expect(await metricValue(app, 'registry_upstream_ratelimit_paused_until_seconds', { upstream: String(id) })).toBe(Math.ceil(paused / 1000));
    // HEADs are free on Docker Hub: a blob HEAD still reaches it
    const head = await registryFetch(app, vr, 'limited/app', `blobs/${image.layers[0].digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(since(hub, mark).filter((r) => r.method === 'HEAD')).not.toEqual([]);

    // a shorter pause ends by itself
    const other = await proxy(upstream);
    const vr2 = await createVirtualRegistry(app, [{ url: other.url }]);
    other.set({ kind: 'status', status: 429, retryAfterSeconds: 2 }, { method: 'GET' });
    expect((await digestOf(vr2, 'limited/app', 'v1')).status).toBe(503);
    other.forward();
    const started = Date.now();
    const resumed = await eventually(async () => (await digestOf(vr2, 'limited/app', 'v1')).status === 200 && Date.now(), 10_000);
    expect(resumed - started).toBeGreaterThanOrEqual(1000);
    expect(manifestGets(other, 0)).toHaveLength(2); // the 429 and the one after the pause
  }, 60_000);

  it('a hanging upstream: the breaker opens, a cached tag is served in under 1 s, the next upstream serves; a probe closes it on recovery', async () => {
    const cached = await buildDockerImage({ seed: 'economy-hang-cached' });
    await pushImage(upstream.url, 'hang/app', 'latest', cached);
    await pushImage(second.url, 'only/second', 'v1', await buildDockerImage({ seed: 'economy-hang-second' }));
    const flaky = await proxy(upstream);
    const vr = await createVirtualRegistry(app, [{ url: flaky.url }, { url: second.url }]);
    const [id] = vr.upstreamIds;
    expect(await digestOf(vr, 'hang/app', 'latest')).toEqual({ status: 200, digest: cached.digest });

    flaky.set({ kind: 'hang' });
    await backdateTagCheck(app, '/hang/app/manifests/latest');
    // three revalidations wait for the headers timeout, each then serves the stale copy
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      expect(await digestOf(vr, 'hang/app', 'latest')).toEqual({ status: 200, digest: cached.digest });
      expect(Date.now() - started).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
    }
    const open = await upstreamDetail(id);
    expect(open.circuit_breaker).toMatchObject({ state: 'open', consecutive_failures: 3 });
    expect(await metricValue(app, 'registry_upstream_circuit_breaker_state', { upstream: String(id) })).toBe(1);
    expect(await metricValue(app, 'registry_upstream_circuit_breaker_openings_total', { upstream: String(id) })).toBe(1);

    const hung = flaky.requests.length;
    let started = Date.now();
    expect(await digestOf(vr, 'hang/app', 'latest')).toEqual({ status: 200, digest: cached.digest });
    expect(Date.now() - started).toBeLessThan(1000);
    started = Date.now();
    expect((await digestOf(vr, 'only/second', 'v1')).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(flaky.requests.length).toBe(hung); // skipped: nothing was sent to it

    // it comes back with a new manifest for the tag: after the cool-down one probe closes the breaker
    const fresh = await buildDockerImage({ seed: 'economy-hang-fresh' });
    flaky.forward();
    await pushImage(upstream.url, 'hang/app', 'latest', fresh);
    await eventually(async () => (await digestOf(vr, 'hang/app', 'latest')).digest === fresh.digest, COOLDOWN_MS + 10_000);
    expect((await upstreamDetail(id)).circuit_breaker).toMatchObject({ state: 'closed', consecutive_failures: 0 });
    expect(await metricValue(app, 'registry_upstream_circuit_breaker_state', { upstream: String(id) })).toBe(0);
  }, 60_000);

  it('100 requests for a missing tag make one upstream request per upstream; an admin change forgets the 404s', async () => {
    const first = await proxy(upstream);
    const other = await proxy(second);
    const vr = await createVirtualRegistry(app, [{ url: first.url }, { url: other.url }]);
    const token = await pullToken(app, vr, 'absent/app');
    const statuses: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all(
        Array.from({ length: 10 }, () =>
          registryFetch(app, vr, 'absent/app', 'manifests/nope', { token }).then(async (r) => (await r.arrayBuffer(), r.status)),
        ),
      );
      statuses.push(...answers);
    }
    expect(statuses).toEqual(Array(100).fill(404));
    expect(since(first, 0).filter((r) => r.path.includes('/manifests/'))).toHaveLength(1);
    expect(since(other, 0).filter((r) => r.path.includes('/manifests/'))).toHaveLength(1);
    expect(await metricValue(app, 'registry_upstream_negative_cache_hits_total', { upstream: String(vr.upstreamIds[0]) })).toBeGreaterThan(0);

    // the image appears upstream; an admin change to the registry's upstreams forgets the remembered 404s
    await pushImage(second.url, 'absent/app', 'nope', await buildDockerImage({ seed: 'economy-absent' }));
    expect((await digestOf(vr, 'absent/app', 'nope')).status).toBe(404); // still remembered
    await adminApi(app, 'PATCH', `/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[1]}`, { name: 'renamed' });
    expect((await digestOf(vr, 'absent/app', 'nope')).status).toBe(200);
  }, 60_000);

  describe('prefetch', () => {
    let index: ImageIndexFixture;
    let hub: FaultyUpstream;
    let vr: VirtualRegistry;

    beforeAll(async () => {
      index = await buildImageIndex({ seed: 'economy-prefetch' });
      await pushImage(upstream.url, 'warm/app', 'v1', index);
      hub = await proxy(upstream);
      vr = await createVirtualRegistry(app, [{ url: hub.url }]);
    }, 60_000);

    it('of a two-platform index: done, then skopeo copy --all makes zero upstream blob requests; a missing image fails with the upstream answer', async () => {
      const created = await adminApi<PrefetchAnswer>(app, 'POST', `/api/v4/virtual_registries/container/registries/${vr.registryId}/prefetch`, {
        images: [{ image: 'warm/app:v1' }, { image: 'warm/missing:v1' }],
      });
      expect(created.status).toBe('pending');
      expect(created.images.map((i) => [i.repository, i.reference])).toEqual([
        ['warm/app', 'v1'],
        ['warm/missing', 'v1'],
      ]);
      const done = await prefetchDone(vr, created.id);
      expect(done.status).toBe('failed');
      expect(done.images[0]).toMatchObject({ status: 'done', reason: null, manifests: 3, blobs: imageBlobs(index).length });
      expect(done.images[1]).toMatchObject({ status: 'failed', manifests: 0, blobs: 0 });
      expect(done.images[1].reason).toMatch(/^404 MANIFEST_UNKNOWN/);

      const mark = hub.requests.length;
      await skopeoCopyAll(vr, 'warm/app:v1');
      expect(since(hub, mark).filter((r) => r.path.includes('/blobs/'))).toEqual([]);
    }, 120_000);

    it('of chosen platforms fills only those; an unknown platform fails saying which platforms the index has', async () => {
      const only = await buildImageIndex({ seed: 'economy-prefetch-platform' });
      await pushImage(upstream.url, 'warm/platform', 'v1', only);
      const created = await adminApi<PrefetchAnswer>(app, 'POST', `/api/v4/virtual_registries/container/registries/${vr.registryId}/prefetch`, {
        images: [
          { image: 'warm/platform:v1', platforms: ['linux/arm64'] },
          { image: 'warm/platform:v1', platforms: ['linux/s390x'] },
        ],
      });
      const done = await prefetchDone(vr, created.id);
      const arm = only.children.find((c) => c.platform?.architecture === 'arm64')!;
      expect(done.images[0]).toMatchObject({ status: 'done', manifests: 2, blobs: 1 + arm.layers.length });
      expect(done.images[1]).toMatchObject({ status: 'failed' });
      expect(done.images[1].reason).toContain('linux/s390x');
      expect(done.images[1].reason).toContain('linux/amd64');
      const amd = only.children.find((c) => c.platform?.architecture === 'amd64')!;
      const mark = hub.requests.length;
      expect((await registryFetch(app, vr, 'warm/platform', `blobs/${arm.layers[0].digest}`)).status).toBe(200);
      expect(since(hub, mark)).toEqual([]);
      expect((await registryFetch(app, vr, 'warm/platform', `blobs/${amd.layers[0].digest}`)).status).toBe(200);
      expect(since(hub, mark).filter((r) => r.path.includes('/blobs/'))).toHaveLength(1);
    }, 120_000);

    it('racing a skopeo pull of the same image downloads each blob once', async () => {
      const racing = await buildImageIndex({ seed: 'economy-prefetch-race', layerSizes: [6 * 1024 * 1024, 2 * 1024 * 1024] });
      await pushImage(upstream.url, 'warm/race', 'v1', racing);
      const slow = await proxy(upstream);
      slow.set({ kind: 'throttle', bytesPerSecond: 8 * 1024 * 1024 }, { path: /\/blobs\// });
      const raceVr = await createVirtualRegistry(app, [{ url: slow.url }]);
      const [created] = await Promise.all([
        adminApi<PrefetchAnswer>(app, 'POST', `/api/v4/virtual_registries/container/registries/${raceVr.registryId}/prefetch`, {
          images: [{ image: 'warm/race:v1' }],
        }),
        skopeoCopyAll(raceVr, 'warm/race:v1'),
      ]);
      expect((await prefetchDone(raceVr, created.id)).images[0].status).toBe('done');
      const blobGets = slow.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).map((r) => r.path.replace(/^.*\/blobs\//, ''));
      const expected = imageBlobs(racing).map((b) => b.digest);
      expect([...blobGets].sort()).toEqual([...expected].sort());
    }, 120_000);

    it('needs the Maintainer role, refuses bad references with 400, and hides other registries', async () => {
      const api = new AdminApi(app.url);
      const reporter = await api.createUserToken(`economy-reporter-${Date.now()}`, { groupId: vr.groupId, role: 'reporter' });
      const maintainer = await api.createUserToken(`economy-maintainer-${Date.now()}`, { groupId: vr.groupId, role: 'maintainer' });
      const outsider = await api.createUserToken(`economy-outsider-${Date.now()}`);
      const path = `/api/v4/virtual_registries/container/registries/${vr.registryId}/prefetch`;
      const body = { images: [{ image: 'warm/app:v1' }] };
      expect((await api.as(reporter).request('POST', path, body)).status).toBe(403);
      expect((await api.as(outsider).request('POST', path, body)).status).toBe(404);
      const ok = await api.as(maintainer).request<PrefetchAnswer>('POST', path, body);
      expect(ok.status).toBe(201);
      expect((await api.as(reporter).request('GET', `${path}/${ok.body.id}`)).status).toBe(403);
      expect((await api.as(maintainer).request('GET', `${path}/${ok.body.id}`)).status).toBe(200);
      expect((await api.request('GET', `${path}/999999`)).status).toBe(404);

      const bad = await api.request<{ message: Record<string, string[]> }>('POST', path, { images: [{ image: 'Bad/Name:x' }] });
      expect(bad.status).toBe(400);
      expect(bad.body.message['images[0]'][0]).toMatch(/is not an image reference/);
      expect((await api.request('POST', path, { images: [] })).status).toBe(400);
      expect((await api.request('POST', path, { images: [{ image: 'warm/app', platforms: ['amd64'] }] })).status).toBe(400);
      expect((await api.request('POST', path, {})).status).toBe(400);
    }, 60_000);
  });
});
