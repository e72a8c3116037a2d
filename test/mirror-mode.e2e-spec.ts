/**
 * Mirror mode over plain HTTP (issue 14): `?ns=` routing, Docker's `registry-mirrors` form, the root
 * `/v2/<name>` registry, HEAD /v2/, anonymous pulls and the token scopes mirror clients send. The app is in
 * front of two real upstream registries (Debian's docker-registry): "hub" declares it mirrors docker.io,
 * "ghcr" serves only its own host. Real clients (containerd, podman, skopeo) are in mirror-clients.e2e-spec.ts.
 */
import { AdminApi } from './support/admin-api.js';
import { buildDockerImage, pushImage, type PushedImage } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, pullToken, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const canRun = realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry is not installed; bash .ci/install-packages.sh)';

const basic = (user: { username: string; token: string }) => `Basic ${Buffer.from(`${user.username}:${user.token}`).toString('base64')}`;

suite(`mirror mode${reason}`, () => {
  let app: TestApp;
  let hub: UpstreamRegistry;
  let ghcr: UpstreamRegistry;
  let vr: VirtualRegistry; // registry 1: [hub (mirrors docker.io), ghcr]; MIRROR_DEFAULT_REGISTRY
  let anon: VirtualRegistry; // registry 2: [ghcr], anonymous pulls on; the root registry of Host "localhost"
  let hubApp: PushedImage; // docker.io/yourorg/app:v1, only on hub
  let ghcrApp: PushedImage; // ghcr's yourorg/app:v1 (other content), only on ghcr
  let small: PushedImage; // bench/small:1, only on ghcr
  let localhostUrl: string;

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET', base = app.url) => fetch(`${base}${path}`, { method, headers });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const tokenFor = async (query: string, headers: Record<string, string> = {}, base = app.url) => {
    const res = await fetch(`${base}/jwt/auth?service=virtual_registry&${query}`, { headers });
    return { status: res.status, body: (await res.json()) as { token?: string; errors?: { code: string }[] } };
  };

  beforeAll(async () => {
    [hub, ghcr] = await Promise.all([startUpstreamRegistry(), startUpstreamRegistry()]);
    hubApp = await pushImage(hub.url, 'yourorg/app', 'v1', await buildDockerImage({ seed: 'mirror-hub-app' }));
    ghcrApp = await pushImage(ghcr.url, 'yourorg/app', 'v1', await buildDockerImage({ seed: 'mirror-ghcr-app' }));
    small = await pushImage(ghcr.url, 'bench/small', '1', await buildDockerImage({ seed: 'mirror-small' }));
    app = await startTestApp({ MIRROR_DEFAULT_REGISTRY: '1', MIRROR_HOST_REGISTRIES: 'localhost=2' });
    localhostUrl = app.url.replace('127.0.0.1', 'localhost');
    vr = await createVirtualRegistry(app, [{ url: hub.url, mirrorHosts: ['Index.Docker.io'] }, { url: ghcr.url }]);
    anon = await createVirtualRegistry(app, [{ url: ghcr.url }]);
    expect([vr.registryId, anon.registryId]).toEqual([1, 2]);
    const admin = new AdminApi(app.url);
    await admin.expect(200, 'PATCH', `/api/v4/virtual_registries/container/registries/${anon.registryId}`, { anonymous_pull: true });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await Promise.all([hub?.close(), ghcr?.close()]);
  });

  describe('the admin API', () => {
    it('stores mirror_hosts canonical (Docker Hub names as docker.io) and refuses what is not a host', async () => {
      const admin = new AdminApi(app.url);
      expect((await admin.get(`/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[0]}`)).body.mirror_hosts).toEqual(['docker.io']);
      expect((await admin.get(`/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[1]}`)).body.mirror_hosts).toEqual([]);
      const bad = await admin.patch(`/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[1]}`, { mirror_hosts: ['https://quay.io/x'] });
      expect(bad.status).toBe(400);
      expect(bad.body.message).toHaveProperty('mirror_hosts');
      expect((await admin.patch(`/api/v4/virtual_registries/container/upstreams/${vr.upstreamIds[1]}`, { mirror_hosts: 'quay.io' })).status).toBe(400);
    });

    it('lets a group owner, not a maintainer, turn anonymous pulls on; off by default', async () => {
      const admin = new AdminApi(app.url);
      expect((await admin.get(`/api/v4/virtual_registries/container/registries/${vr.registryId}`)).body.anonymous_pull).toBe(false);
      expect((await admin.get(`/api/v4/virtual_registries/container/registries/${anon.registryId}`)).body.anonymous_pull).toBe(true);
      const maintainer = admin.as(await admin.createUserToken('mirror-maintainer', { groupId: vr.groupId, role: 'maintainer' }));
      expect((await maintainer.patch(`/api/v4/virtual_registries/container/registries/${vr.registryId}`, { anonymous_pull: true })).status).toBe(403);
      expect((await maintainer.patch(`/api/v4/virtual_registries/container/registries/${vr.registryId}`, { description: 'fine' })).status).toBe(200);
      expect((await admin.get(`/api/v4/virtual_registries/container/registries/${vr.registryId}`)).body.anonymous_pull).toBe(false);
      expect((await admin.patch(`/api/v4/virtual_registries/container/registries/${vr.registryId}`, { anonymous_pull: 'yes' })).status).toBe(400);
    });
  });

  describe('?ns= routing', () => {
    const manifest = async (name: string, ref: string, ns: string, method = 'GET') =>
      registryFetch(app, vr, name, `manifests/${ref}?ns=${encodeURIComponent(ns)}`, { method });

    it("a host only the second upstream serves gets its content, not the first upstream's image of the same name", async () => {
      await hub.reset();
      const res = await manifest('yourorg/app', 'v1', ghcr.host);
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(ghcrApp.manifestDigest);
      expect(Buffer.from(await res.arrayBuffer())).toEqual(ghcrApp.manifestBytes);
      expect(await hub.requests()).toEqual([]);
    });

    it('asks only the upstreams serving the host: docker.io (any of its names) goes to the upstream declaring it', async () => {
      for (const ns of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
        const res = await manifest('yourorg/app', 'v1', ns);
        expect(res.status).toBe(200);
        expect(res.headers.get('docker-content-digest')).toBe(hubApp.manifestDigest);
      }
    });

    // Known gap, for the lead (pull.service.ts is being rewritten; this branch may not edit it): the
    // in-memory manifest cache (RecentManifests) and the manifest-fetch coalescing are keyed by registry id
    // and path, not by the target's upstreams, so a tag just served for docker.io is served for the same name
    // asked as another host for MEMORY_CACHE_TTL_MS. Keying both by `upstreamIds(target)` fixes it; then turn
    // this into a plain `it`.
    it("never serves a tag remembered in memory for one host to another host's name", async () => {
      expect((await manifest('yourorg/app', 'v1', 'docker.io')).headers.get('docker-content-digest')).toBe(hubApp.manifestDigest);
      const res = await manifest('yourorg/app', 'v1', ghcr.host);
      expect(res.headers.get('docker-content-digest')).toBe(ghcrApp.manifestDigest);
    });

    it('a host no upstream serves: 404 NAME_UNKNOWN and no upstream is asked', async () => {
      await Promise.all([hub.reset(), ghcr.reset()]);
      for (const ns of ['gcr.io', 'quay.io:443', 'not a host']) {
        const res = await manifest('bench/small', '1', ns);
        expect(res.status).toBe(404);
        expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('NAME_UNKNOWN');
      }
      const blob = await registryFetch(app, vr, 'bench/small', `blobs/${small.blobs[0].digest}?ns=gcr.io`);
      expect(blob.status).toBe(404);
      expect(await hub.requests()).toEqual([]);
      expect(await ghcr.requests()).toEqual([]);
    });

    it("never serves one host's cached content for another host's name", async () => {
      // bench/small:1 cached from ghcr (no ns: both upstreams are asked in order, ghcr has it)
      const cached = await registryFetch(app, vr, 'bench/small', 'manifests/1');
      expect(cached.status).toBe(200);
      expect(cached.headers.get('docker-content-digest')).toBe(small.manifestDigest);
      const blob = small.blobs[0].digest;
      expect((await registryFetch(app, vr, 'bench/small', `blobs/${blob}`)).status).toBe(200);
      // asked as docker.io's image: only hub is consulted, and hub has no bench/small
      await Promise.all([hub.reset(), ghcr.reset()]);
      for (const method of ['GET', 'HEAD']) {
        expect((await manifest('bench/small', '1', 'docker.io', method)).status).toBe(404);
        expect((await manifest('bench/small', small.manifestDigest, 'docker.io', method)).status).toBe(404);
        expect((await registryFetch(app, vr, 'bench/small', `blobs/${blob}?ns=docker.io`, { method })).status).toBe(404);
      }
      expect((await ghcr.requests()).length).toBe(0);
      expect((await hub.requests()).every((r) => r.repository === 'bench/small')).toBe(true);
      // and as ghcr's, it is served (from the cache: ghcr is not asked for the digest)
      expect((await manifest('bench/small', small.manifestDigest, ghcr.host)).status).toBe(200);
      expect((await registryFetch(app, vr, 'bench/small', `blobs/${blob}?ns=${ghcr.host}`)).status).toBe(200);
      expect((await ghcr.requests()).filter((r) => r.kind !== 'base')).toEqual([]);
    });

    it('tags/list follows ns too', async () => {
      expect((await registryFetch(app, vr, 'bench/small', 'tags/list?ns=docker.io')).status).toBe(404);
      const res = await registryFetch(app, vr, 'bench/small', `tags/list?ns=${ghcr.host}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { tags: string[] }).tags).toEqual(['1']);
    });
  });

  describe('HEAD /v2/', () => {
    it('answers like GET /v2/, without a body: 401 with the same challenge, or 200 with a token', async () => {
      const [getRes, headRes] = await Promise.all([get('/v2/'), get('/v2/', {}, 'HEAD')]);
      expect([getRes.status, headRes.status]).toEqual([401, 401]);
      expect(headRes.headers.get('www-authenticate')).toBe(getRes.headers.get('www-authenticate'));
      expect(headRes.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      expect(await headRes.text()).toBe('');
      const token = await pullToken(app, vr, 'bench/small');
      const ok = await get('/v2/', bearer(token), 'HEAD');
      expect(ok.status).toBe(200);
      expect(await ok.text()).toBe('');
    });
  });

  describe("Docker's registry-mirrors form and the root /v2", () => {
    const prefixed = (path: string) => `/v2/virtual_registries/containers/${vr.registryId}/${path}`;
    const dockerForm = (path: string) => `/virtual_registries/containers/${vr.registryId}/v2/${path}`;

    it('pings /virtual_registries/containers/<id>/v2/ (GET and HEAD) with a challenge whose realm names the registry', async () => {
      for (const method of ['GET', 'HEAD']) {
        for (const path of [`/virtual_registries/containers/${vr.registryId}/v2/`, `/virtual_registries/container/${vr.registryId}/v2`]) {
          const res = await get(path, {}, method);
          expect(res.status).toBe(401);
          expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="${app.url}/jwt/auth?registry=${vr.registryId}",service="virtual_registry"`);
        }
      }
      expect((await get('/virtual_registries/containers/0/v2/')).status).toBe(404);
      expect((await get('/virtual_registries/images/1/v2/')).status).toBe(404);
    });

    it('serves manifests, blobs and tags byte-identical to the prefixed routes, with the token of a bare scope', async () => {
      // what Docker does: the challenge's realm, the image's own name as scope
      const challenge = (await get(dockerForm('bench/small/manifests/1'))).headers.get('www-authenticate')!;
      expect(challenge).toBe(
        `Bearer realm="${app.url}/jwt/auth?registry=${vr.registryId}",service="virtual_registry",scope="repository:virtual_registries/containers/${vr.registryId}/bench/small:pull"`,
      );
      const issued = await tokenFor(`registry=${vr.registryId}&scope=repository:bench/small:pull`, { authorization: basic(vr.pullUser) });
      expect(issued.status).toBe(200);
      const canonical = await pullToken(app, vr, 'bench/small');
      for (const path of ['manifests/1', `manifests/${small.manifestDigest}`, `blobs/${small.blobs[1].digest}`, 'tags/list']) {
        const viaMirror = await get(dockerForm(`bench/small/${path}`), bearer(issued.body.token!));
        const viaPrefix = await get(prefixed(`bench/small/${path}`), bearer(canonical));
        expect([viaMirror.status, viaPrefix.status]).toEqual([200, 200]);
        expect(Buffer.from(await viaMirror.arrayBuffer())).toEqual(Buffer.from(await viaPrefix.arrayBuffer()));
        expect(viaMirror.headers.get('docker-content-digest')).toBe(viaPrefix.headers.get('docker-content-digest'));
        expect(viaMirror.headers.get('content-type')).toBe(viaPrefix.headers.get('content-type'));
      }
      const head = await get(dockerForm(`bench/small/manifests/1`), bearer(issued.body.token!), 'HEAD');
      expect(head.status).toBe(200);
      expect(head.headers.get('docker-content-digest')).toBe(small.manifestDigest);
      // the token is the registry's: it works on the prefixed route too, and not for another registry
      expect((await get(prefixed('bench/small/manifests/1'), bearer(issued.body.token!))).status).toBe(200);
      expect((await get(`/virtual_registries/containers/${anon.registryId}/v2/bench/small/manifests/1`, bearer(issued.body.token!))).status).toBe(403);
      expect((await get(dockerForm('bench/small/tags/list?ns=docker.io'), bearer(issued.body.token!))).status).toBe(404);
    });

    it('serves the default registry at the root /v2/<name>, the challenge naming it', async () => {
      const challenge = await get('/v2/bench/small/manifests/1');
      expect(challenge.status).toBe(401);
      expect(challenge.headers.get('www-authenticate')).toContain(`realm="${app.url}/jwt/auth?registry=${vr.registryId}"`);
      expect((await get('/v2/')).headers.get('www-authenticate')).toBe(
        `Bearer realm="${app.url}/jwt/auth?registry=${vr.registryId}",service="virtual_registry"`,
      );
      // no registry hint: the Host's root registry is the bare scope's registry
      const issued = await tokenFor('scope=repository:bench/small:pull', { authorization: basic(vr.pullUser) });
      const res = await get('/v2/bench/small/manifests/1', bearer(issued.body.token!));
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer())).toEqual(small.manifestBytes);
      const blob = await get(`/v2/bench/small/blobs/${small.blobs[0].digest}`, bearer(issued.body.token!));
      expect(blob.status).toBe(200);
      expect(blob.headers.get('docker-content-digest')).toBe(small.blobs[0].digest);
    });

    it('maps a Host name to its registry (MIRROR_HOST_REGISTRIES), which allows anonymous pulls', async () => {
      const ping = await get('/v2/', {}, 'GET', localhostUrl);
      expect(ping.status).toBe(200);
      const res = await get('/v2/bench/small/manifests/1', {}, 'GET', localhostUrl);
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(small.manifestDigest);
      // registry 2 has only ghcr: hub's image is not there
      expect((await get('/v2/yourorg/app/manifests/v1', {}, 'GET', localhostUrl)).headers.get('docker-content-digest')).toBe(ghcrApp.manifestDigest);
    });

    it('refuses pushes on the new routes with 405, and malformed root paths with a 4xx', async () => {
      expect((await fetch(`${app.url}${dockerForm('bench/small/manifests/1')}`, { method: 'PUT' })).status).toBe(405);
      expect((await fetch(`${app.url}/v2/bench/small/blobs/uploads/`, { method: 'POST' })).status).toBe(405);
      expect((await get('/v2/bench/small/manifests/..%2f..')).status).toBe(400);
      expect((await get('/v2/_catalog')).status).toBe(404);
    });
  });

  describe('anonymous pulls', () => {
    it('off (the default): every route answers 401 without credentials, and no token is issued', async () => {
      const paths = [
        '/v2/',
        `/virtual_registries/containers/${vr.registryId}/v2/`,
        prefixedPath(vr, 'bench/small/manifests/1'),
        prefixedPath(vr, `bench/small/blobs/${small.blobs[0].digest}`),
        prefixedPath(vr, 'bench/small/manifests/1?ns=docker.io'),
        `/virtual_registries/containers/${vr.registryId}/v2/bench/small/manifests/1`,
        `/virtual_registries/containers/${vr.registryId}/v2/bench/small/blobs/${small.blobs[0].digest}`,
        `/virtual_registries/containers/${vr.registryId}/v2/bench/small/tags/list`,
        '/v2/bench/small/manifests/1',
        `/v2/bench/small/blobs/${small.blobs[0].digest}`,
      ];
      for (const path of paths) {
        for (const method of ['GET', 'HEAD']) {
          const res = await get(path, {}, method);
          expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 401`);
          expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
        }
      }
      const refused = await tokenFor(`scope=repository:virtual_registries/containers/${vr.registryId}/bench/small:pull&scope=repository:bench/small:pull`);
      expect(refused.status).toBe(401);
    });

    it('on: pulls without credentials on every route, and the token endpoint issues pull-only tokens for it alone', async () => {
      const id = anon.registryId;
      for (const path of [
        `/virtual_registries/containers/${id}/v2/`,
        `/v2/virtual_registries/containers/${id}/bench/small/manifests/1`,
        `/virtual_registries/containers/${id}/v2/bench/small/manifests/1?ns=${ghcr.host}`,
        `/virtual_registries/containers/${id}/v2/bench/small/blobs/${small.blobs[0].digest}`,
      ]) {
        expect(`${path} ${(await get(path)).status}`).toBe(`${path} 200`);
      }
      // the token flow of clients that always fetch one (containerd, podman): no Basic header
      const issued = await tokenFor(
        `registry=${id}&scope=repository:bench/small:pull&scope=repository:virtual_registries/containers/${vr.registryId}/bench/small:pull`,
      );
      expect(issued.status).toBe(200);
      const claims = JSON.parse(Buffer.from(issued.body.token!.split('.')[1], 'base64url').toString()) as { access: { name: string; actions: string[] }[] };
      expect(claims.access).toEqual([{ type: 'repository', name: `virtual_registries/containers/${id}/bench/small`, actions: ['pull'] }]);
      expect((await get(`/v2/virtual_registries/containers/${id}/bench/small/manifests/1`, bearer(issued.body.token!))).status).toBe(200);
      expect((await get(`/v2/virtual_registries/containers/${vr.registryId}/bench/small/manifests/1`, bearer(issued.body.token!))).status).toBe(403);
      expect((await get('/v2/', bearer(issued.body.token!))).status).toBe(200);
      // pushing is never granted
      const push = await tokenFor(`scope=repository:virtual_registries/containers/${id}/bench/small:push`);
      expect(push.status).toBe(401);
    });

    it('turned off again, anonymous tokens and requests stop working at once', async () => {
      const admin = new AdminApi(app.url);
      const issued = await tokenFor(`scope=repository:virtual_registries/containers/${anon.registryId}/bench/small:pull`);
      expect(issued.status).toBe(200);
      await admin.expect(200, 'PATCH', `/api/v4/virtual_registries/container/registries/${anon.registryId}`, { anonymous_pull: false });
      try {
        expect((await get(`/v2/virtual_registries/containers/${anon.registryId}/bench/small/manifests/1`)).status).toBe(401);
        expect((await get(`/v2/virtual_registries/containers/${anon.registryId}/bench/small/manifests/1`, bearer(issued.body.token!))).status).toBe(404);
        expect((await get(`/virtual_registries/containers/${anon.registryId}/v2/`)).status).toBe(401);
      } finally {
        await admin.expect(200, 'PATCH', `/api/v4/virtual_registries/container/registries/${anon.registryId}`, { anonymous_pull: true });
      }
    });
  });

  describe('token scopes as mirror clients send them', () => {
    it('grants the challenge scope and the bare one of the same image, ignores bare scopes of registries the caller may not pull', async () => {
      const other = await createVirtualRegistry(app, [{ url: ghcr.url }]);
      const outsider = new AdminApi(app.url);
      const token = await outsider.createUserToken('mirror-outsider', { groupId: other.groupId, role: 'guest' }, ['read_virtual_registry']);
      const form = new URLSearchParams({
        grant_type: 'password',
        username: 'mirror-outsider',
        password: token,
        service: 'virtual_registry',
        scope: `repository:virtual_registries/containers/${other.registryId}/bench/small:pull repository:bench/small:pull`,
      });
      // containerd's OAuth2 POST to the realm of a mirror route of registry `other`: both scopes are that registry's
      const own = await fetch(`${app.url}/jwt/auth?registry=${other.registryId}`, { method: 'POST', body: form });
      expect(own.status).toBe(200);
      expect(((await own.json()) as { scope: string }).scope).toBe(`repository:virtual_registries/containers/${other.registryId}/bench/small:pull`);
      // the same bare scope against registry 1 (not the outsider's): dropped, and the token pulls nothing there
      const foreign = await fetch(`${app.url}/jwt/auth?registry=${vr.registryId}`, { method: 'POST', body: form });
      const foreignBody = (await foreign.json()) as { scope: string; token: string };
      expect(foreignBody.scope).toBe(`repository:virtual_registries/containers/${other.registryId}/bench/small:pull`);
      expect((await get(dockerFormOf(vr, 'bench/small/manifests/1'), bearer(foreignBody.token))).status).toBe(403);
      // a malformed registry hint names no registry (it does not fall back to the Host's): the bare scope is dropped
      const junk = await tokenFor('registry=abc&scope=repository:bench/small:pull', { authorization: basic(vr.pullUser) });
      expect(junk.status).toBe(200);
      expect(JSON.parse(Buffer.from(junk.body.token!.split('.')[1], 'base64url').toString()).access).toEqual([]);
      const viaHost = await tokenFor('scope=repository:bench/small:pull', { authorization: basic(vr.pullUser) });
      expect(JSON.parse(Buffer.from(viaHost.body.token!.split('.')[1], 'base64url').toString()).access).toEqual([
        { type: 'repository', name: `virtual_registries/containers/${vr.registryId}/bench/small`, actions: ['pull'] },
      ]);
    });
  });
});

function prefixedPath(vr: VirtualRegistry, path: string): string {
  return `/v2/virtual_registries/containers/${vr.registryId}/${path}`;
}

function dockerFormOf(vr: VirtualRegistry, path: string): string {
  return `/virtual_registries/containers/${vr.registryId}/v2/${path}`;
}
