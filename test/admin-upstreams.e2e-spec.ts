/**
 * Admin API: upstreams (create in a registry, list per group and per registry, get, update, delete,
 * and the `test` endpoints against a real upstream registry, CNCF Distribution with token auth).
 */
import { DataSource } from 'typeorm';
import { UpstreamClient } from '../src/upstreams/client/upstream-client.js';
import { UpstreamsService } from '../src/upstreams/upstreams.service.js';
import { AdminApi, eventually } from './support/admin-api.js';
import { realServices } from './support/services.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, UPSTREAM_CREDENTIALS, type UpstreamRegistry } from './support/upstream-registry.js';

const REGISTRIES = (group: number) => `/api/v4/groups/${group}/-/virtual_registries/container/registries`;
const GROUP_UPSTREAMS = (group: number | string) => `/api/v4/groups/${group}/-/virtual_registries/container/upstreams`;
const REGISTRY_UPSTREAMS = (registry: number) => `/api/v4/virtual_registries/container/registries/${registry}/upstreams`;
const UPSTREAM = (id: number | string) => `/api/v4/virtual_registries/container/upstreams/${id}`;

// GitLab's fields, plus the mirror_hosts extension (mirror mode)
const UPSTREAM_FIELDS = ['id', 'group_id', 'name', 'description', 'url', 'username', 'cache_validity_hours', 'mirror_hosts', 'created_at', 'updated_at'];

describe.each(databaseTargets())('admin API: upstreams (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let db: DataSource;
  let group: { id: number; path: string };
  let registryId: number;

  beforeAll(async () => {
    app = await startTestApp({ REGISTRIES_PER_GROUP: '20', UPSTREAMS_PER_REGISTRY: '5' }, { database });
    admin = new AdminApi(app.url);
    db = app.app.get(DataSource);
    group = await admin.createGroup('upstreams');
    registryId = (await admin.expect(201, 'POST', REGISTRIES(group.id), { name: 'main' })).body.id;
  });

  afterAll(async () => {
    await app?.close();
  });

  const newRegistry = async (name: string) => (await admin.expect(201, 'POST', REGISTRIES(group.id), { name })).body.id as number;

  it('creates an upstream in a registry with GitLab fields, normalising the url', async () => {
    const created = await admin.post(REGISTRY_UPSTREAMS(registryId), {
      name: 'Docker Hub',
      description: 'Docker Hub registry',
      url: 'HTTP://127.0.0.1:5000/v2/',
      username: 'robot',
      password: 'hunter2-secret',
      cache_validity_hours: 48,
    });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      id: expect.any(Number),
      group_id: group.id,
      name: 'Docker Hub',
      description: 'Docker Hub registry',
      url: 'http://127.0.0.1:5000',
      username: 'robot',
      cache_validity_hours: 48,
      mirror_hosts: [],
      created_at: expect.any(String),
      updated_at: expect.any(String),
      registry_upstream: { id: expect.any(Number), registry_id: registryId, position: 1 },
    });

    const got = await admin.expect(200, 'GET', UPSTREAM(created.body.id));
    expect(Object.keys(got.body).sort()).toEqual([...UPSTREAM_FIELDS, 'registry_upstreams', 'rate_limit', 'circuit_breaker'].sort());
    expect(got.body.registry_upstreams).toEqual([created.body.registry_upstream]);
    // extensions: nothing asked of it yet
    expect(got.body.rate_limit).toEqual({ limit: null, remaining: null, window_seconds: null, source: null, seen_at: null, paused_until: null });
    expect(got.body.circuit_breaker).toEqual({ state: 'closed', consecutive_failures: 0, opened_at: null, open_until: null, cooldown_ms: 30000 });

    const defaults = await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(registryId), { name: 'anon', url: 'https://127.0.0.2/' });
    expect(defaults.body).toMatchObject({ url: 'https://127.0.0.2', username: null, description: null, cache_validity_hours: 24 });
    expect(defaults.body.registry_upstream.position).toBe(2);
  });

  it('lists a group’s upstreams with pagination and upstream_name, and a registry’s in position order', async () => {
    const g = await admin.createGroup('listing');
    const r = (await admin.expect(201, 'POST', REGISTRIES(g.id), { name: 'r' })).body.id;
    for (const name of ['Docker Hub', 'GHCR', 'Quay', 'docker mirror']) {
      await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name, url: `http://127.0.0.1:${5100 + name.length}/${name.replace(/ /g, '')}` });
    }
    const page = await admin.expect(200, 'GET', `${GROUP_UPSTREAMS(g.id)}?per_page=3`);
    expect(page.body).toHaveLength(3);
    expect(Object.keys(page.body[0]).sort()).toEqual([...UPSTREAM_FIELDS].sort());
    expect(page.headers.get('x-total')).toBe('4');
    expect(page.headers.get('x-next-page')).toBe('2');
    expect(page.headers.get('link')).toContain('rel="next"');

    const filtered = await admin.expect(200, 'GET', `${GROUP_UPSTREAMS(g.path)}?upstream_name=DOCKER`);
    expect(filtered.body.map((u: { name: string }) => u.name).sort()).toEqual(['Docker Hub', 'docker mirror']);
    expect((await admin.get(`${GROUP_UPSTREAMS(g.id)}?upstream_name=%25`)).body).toEqual([]);

    const ofRegistry = await admin.expect(200, 'GET', REGISTRY_UPSTREAMS(r));
    expect(ofRegistry.body.map((u: { name: string; registry_upstream: { position: number } }) => [u.name, u.registry_upstream.position])).toEqual([
      ['Docker Hub', 1],
      ['GHCR', 2],
      ['Quay', 3],
      ['docker mirror', 4],
    ]);
  });

  it('updates fields; a new url drops the credentials unless new ones come with it', async () => {
    const r = await newRegistry('update');
    const u = (
      await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'creds', url: 'http://127.0.0.1:6001', username: 'alice', password: 'first-pass' })
    ).body;

    const renamed = await admin.expect(200, 'PATCH', UPSTREAM(u.id), { name: 'renamed', cache_validity_hours: 0, description: 'desc' });
    expect(renamed.body).toMatchObject({ name: 'renamed', cache_validity_hours: 0, description: 'desc', username: 'alice', url: 'http://127.0.0.1:6001' });
    expect(Object.keys(renamed.body).sort()).toEqual([...UPSTREAM_FIELDS].sort());

    const storedBefore = (await db.query('SELECT password_ciphertext FROM upstreams WHERE id = $1', [u.id]))[0].password_ciphertext;
    const newCredentials = await admin.expect(200, 'PATCH', UPSTREAM(u.id), { username: 'bob', password: 'second-pass' });
    expect(newCredentials.body.username).toBe('bob');
    const storedAfter = (await db.query('SELECT password_ciphertext FROM upstreams WHERE id = $1', [u.id]))[0].password_ciphertext;
    expect(storedAfter).not.toBe(storedBefore);

    const moved = await admin.expect(200, 'PATCH', UPSTREAM(u.id), { url: 'http://127.0.0.1:6002' });
    expect(moved.body).toMatchObject({ url: 'http://127.0.0.1:6002', username: null });
    const cleared = await db.query('SELECT username, password_ciphertext, credentials_key_id FROM upstreams WHERE id = $1', [u.id]);
    expect(cleared[0]).toEqual({ username: null, password_ciphertext: null, credentials_key_id: null });

    const movedWithCredentials = await admin.expect(200, 'PATCH', UPSTREAM(u.id), {
      url: 'http://127.0.0.1:6003',
      username: 'carol',
      password: 'third-pass',
    });
    expect(movedWithCredentials.body).toMatchObject({ url: 'http://127.0.0.1:6003', username: 'carol' });

    // the same url again is not a change: the credentials stay
    expect((await admin.expect(200, 'PATCH', UPSTREAM(u.id), { url: 'http://127.0.0.1:6003/' })).body.username).toBe('carol');

    const removed = await admin.expect(200, 'PATCH', UPSTREAM(u.id), { username: null, password: null });
    expect(removed.body.username).toBeNull();
  });

  it('answers 400 with field messages for invalid input', async () => {
    const r = await newRegistry('invalid');
    const cases: [Record<string, unknown>, string][] = [
      [{ url: 'http://127.0.0.1:7001' }, 'name'],
      [{ name: 'no url' }, 'url'],
      [{ name: 'x', url: 'ftp://127.0.0.1/' }, 'url'],
      [{ name: 'x', url: 'not a url' }, 'url'],
      [{ name: 'x', url: 'http://user:pw@127.0.0.1:7001' }, 'url'],
      [{ name: 'x', url: `http://127.0.0.1:7001/${'p'.repeat(250)}` }, 'url'],
      [{ name: 'x', url: 'http://127.0.0.1:7001', username: 'only-user' }, 'password'],
      [{ name: 'x', url: 'http://127.0.0.1:7001', password: 'only-password' }, 'username'],
      [{ name: 'x', url: 'http://127.0.0.1:7001', cache_validity_hours: -1 }, 'cache_validity_hours'],
      [{ name: 'x', url: 'http://127.0.0.1:7001', cache_validity_hours: 'soon' }, 'cache_validity_hours'],
      [{ name: 'x'.repeat(256), url: 'http://127.0.0.1:7001' }, 'name'],
      [{ name: 'x', url: 'http://127.0.0.1:7001', description: 'd'.repeat(1025) }, 'description'],
    ];
    for (const [body, field] of cases) {
      const res = await admin.post(REGISTRY_UPSTREAMS(r), body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(JSON.stringify(res.body.message)).toContain(field);
    }
    expect((await admin.get(REGISTRY_UPSTREAMS(r))).body).toEqual([]);

    const u = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'ok', url: 'http://127.0.0.1:7002', username: 'a', password: 'b' })).body;
    expect((await admin.patch(UPSTREAM(u.id), {})).status).toBe(400);
    expect((await admin.patch(UPSTREAM(u.id), { username: 'only' })).status).toBe(400);
    expect((await admin.patch(UPSTREAM(u.id), { url: 'gopher://x' })).status).toBe(400);
    expect((await admin.patch(UPSTREAM(u.id), { cache_validity_hours: 1.5 })).status).toBe(400);

    // GitLab: no two upstreams of a group with the same url and credentials
    const twin = await admin.post(REGISTRY_UPSTREAMS(r), { name: 'twin', url: 'http://127.0.0.1:7002/', username: 'a', password: 'b' });
    expect(twin.status).toBe(400);
    expect(twin.body.message).toEqual({ url: ['already has a remote upstream with the same url and credentials'] });
    expect((await admin.post(REGISTRY_UPSTREAMS(r), { name: 'cousin', url: 'http://127.0.0.1:7002', username: 'a', password: 'c' })).status).toBe(201);
  });

  it('deletes an upstream with its associations', async () => {
    const r = await newRegistry('delete');
    const first = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'one', url: 'http://127.0.0.1:7101' })).body;
    const second = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'two', url: 'http://127.0.0.1:7102' })).body;
    expect((await admin.delete(UPSTREAM(first.id))).status).toBe(204);
    expect((await admin.get(UPSTREAM(first.id))).status).toBe(404);
    const left = await admin.expect(200, 'GET', REGISTRY_UPSTREAMS(r));
    expect(left.body.map((u: { id: number; registry_upstream: { position: number } }) => [u.id, u.registry_upstream.position])).toEqual([[second.id, 1]]);
    expect((await admin.delete(UPSTREAM(first.id))).status).toBe(404);
  });

  it('checks roles and hides other groups’ upstreams', async () => {
    const r = await newRegistry('roles');
    const u = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'guarded', url: 'http://127.0.0.1:7201' })).body;
    const reporter = admin.as(await admin.createUserToken('up-reporter', { groupId: group.id, role: 'reporter' }));
    const maintainer = admin.as(await admin.createUserToken('up-maintainer', { groupId: group.id, role: 'maintainer' }));
    const stranger = admin.as(await admin.createUserToken('up-stranger'));

    expect((await reporter.get(UPSTREAM(u.id))).status).toBe(200);
    expect((await reporter.get(REGISTRY_UPSTREAMS(r))).status).toBe(200);
    expect((await reporter.get(GROUP_UPSTREAMS(group.id))).status).toBe(200);
    expect((await reporter.post(REGISTRY_UPSTREAMS(r), { name: 'n', url: 'http://127.0.0.1:7202' })).status).toBe(403);
    expect((await reporter.patch(UPSTREAM(u.id), { name: 'n' })).status).toBe(403);
    expect((await reporter.delete(UPSTREAM(u.id))).status).toBe(403);
    expect((await reporter.post(`${UPSTREAM(u.id)}/test`)).status).toBe(403);
    expect((await reporter.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: 'http://127.0.0.1:7203' })).status).toBe(403);

    for (const res of [
      await stranger.get(UPSTREAM(u.id)),
      await stranger.get(REGISTRY_UPSTREAMS(r)),
      await stranger.get(GROUP_UPSTREAMS(group.id)),
      await stranger.post(REGISTRY_UPSTREAMS(r), { name: 'n', url: 'http://127.0.0.1:7204' }),
      await stranger.patch(UPSTREAM(u.id), { name: 'n' }),
      await stranger.delete(UPSTREAM(u.id)),
      await stranger.post(`${UPSTREAM(u.id)}/test`),
      await stranger.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: 'http://127.0.0.1:7205' }),
    ]) {
      expect(res.status).toBe(404);
    }

    expect((await maintainer.patch(UPSTREAM(u.id), { name: 'by-maintainer' })).status).toBe(200);
  });

  it('answers 404 for what does not exist', async () => {
    expect((await admin.get(UPSTREAM(999999))).status).toBe(404);
    expect((await admin.patch(UPSTREAM(999999), { name: 'x' })).status).toBe(404);
    expect((await admin.delete(UPSTREAM(999999))).status).toBe(404);
    expect((await admin.post(`${UPSTREAM(999999)}/test`)).status).toBe(404);
    expect((await admin.get(REGISTRY_UPSTREAMS(999999))).status).toBe(404);
    expect((await admin.post(REGISTRY_UPSTREAMS(999999), { name: 'x', url: 'http://127.0.0.1:7301' })).status).toBe(404);
    expect((await admin.get(GROUP_UPSTREAMS(999999))).status).toBe(404);
    expect((await admin.post(`${GROUP_UPSTREAMS('nope')}/test`, { url: 'http://127.0.0.1:7302' })).status).toBe(404);
  });

  const withRegistry = realServices.hasBinary('docker-registry') ? describe : describe.skip;
  if (!realServices.hasBinary('docker-registry')) {
    process.stdout.write('admin-upstreams: the `test` endpoint suite needs Debian docker-registry (apt-get install docker-registry)\n');
  }

  withRegistry('test endpoints against a token-authenticated CNCF Distribution', () => {
    let upstream: UpstreamRegistry;

    beforeAll(async () => {
      upstream = await startUpstreamRegistry({ auth: 'token' });
    });

    afterAll(async () => {
      await upstream?.close();
    });

    it('tests a new upstream: right credentials succeed (404 for the missing test image), wrong ones fail with 401', async () => {
      const ok = await admin.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: upstream.url, ...UPSTREAM_CREDENTIALS });
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual({ success: true });

      const wrong = await admin.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: upstream.url, username: 'upstream-user', password: 'wrong' });
      expect(wrong.status).toBe(200);
      expect(wrong.body).toEqual({ success: false, result: 'Error: 401 - Unauthorized' });

      const anonymous = await admin.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: upstream.url });
      expect(anonymous.body).toEqual({ success: false, result: 'Error: 401 - Unauthorized' });

      const unreachable = await admin.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: 'http://127.0.0.1:1' });
      expect(unreachable.body.success).toBe(false);
      expect(unreachable.body.result).toMatch(/^Error: /);

      expect((await admin.post(`${GROUP_UPSTREAMS(group.id)}/test`, {})).status).toBe(400);
      expect((await admin.post(`${GROUP_UPSTREAMS(group.id)}/test`, { url: upstream.url, username: 'only' })).status).toBe(400);
    });

    it('tests an existing upstream with its stored credentials, or with overrides', async () => {
      const r = await newRegistry('tested');
      const good = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'good', url: upstream.url, ...UPSTREAM_CREDENTIALS })).body;
      expect((await admin.expect(200, 'POST', `${UPSTREAM(good.id)}/test`)).body).toEqual({ success: true });

      const bad = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'bad', url: upstream.url, username: 'upstream-user', password: 'nope' }))
        .body;
      expect((await admin.expect(200, 'POST', `${UPSTREAM(bad.id)}/test`)).body).toEqual({ success: false, result: 'Error: 401 - Unauthorized' });
      // credential overrides are tried without saving them
      expect((await admin.expect(200, 'POST', `${UPSTREAM(bad.id)}/test`, UPSTREAM_CREDENTIALS)).body).toEqual({ success: true });
      expect((await admin.expect(200, 'POST', `${UPSTREAM(bad.id)}/test`)).body.success).toBe(false);
      // a url override is tested without the stored credentials
      expect((await admin.expect(200, 'POST', `${UPSTREAM(good.id)}/test`, { url: upstream.url })).body).toEqual({
        success: false,
        result: 'Error: 401 - Unauthorized',
      });
      expect((await admin.post(`${UPSTREAM(good.id)}/test`, { password: 'only' })).status).toBe(400);
    });

    it('remembers the token endpoint the upstream challenged with (auth_url)', async () => {
      // another group: the 'good' upstream above already has this url and these credentials
      const g = await admin.createGroup('realm-group');
      const r = (await admin.expect(201, 'POST', REGISTRIES(g.id), { name: 'realm' })).body.id;
      const created = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(r), { name: 'realm', url: upstream.url, ...UPSTREAM_CREDENTIALS })).body;
      const authUrl = async () => (await db.query('SELECT auth_url FROM upstreams WHERE id = $1', [created.id]))[0].auth_url as string | null;
      expect(await authUrl()).toBeNull();
      // the test endpoint probes with a throwaway identity: it never writes the real upstream's state
      await admin.expect(200, 'POST', `${UPSTREAM(created.id)}/test`);
      expect(await authUrl()).toBeNull();

      // a request made for the upstream itself (as the pull path does) persists the realm it learnt
      const upstreams = app.app.get(UpstreamsService);
      const pullUpstream = await upstreams.pullUpstreamOf(created.id);
      const res = await app.app.get(UpstreamClient).head(pullUpstream!.descriptor, '/library/alpine/manifests/latest');
      expect(res.status).toBe(404);
      const remembered = await eventually(authUrl);
      expect(remembered).toBe(`${upstream.tokenServer!.realm}?service=${upstream.tokenServer!.service}`);
      // a new url forgets it
      await admin.expect(200, 'PATCH', UPSTREAM(created.id), { url: 'http://127.0.0.1:7401' });
      expect(await authUrl()).toBeNull();
    });
  });
});
