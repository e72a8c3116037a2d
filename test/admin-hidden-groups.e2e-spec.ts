/**
 * A registry, upstream, registry upstream, cache entry or cleanup policy of a group the caller may not see
 * answers exactly like one that does not exist: the same 404 status and body as for a nonexistent id,
 * never a 403 nor a different 404 that would reveal it exists. Members who may see the group but lack the
 * role get 403. One row per admin route that takes a group, registry, upstream, link or cache entry.
 */
import { createHash } from 'node:crypto';
import { AdminApi, type ApiResponse } from './support/admin-api.js';
import { databaseTargets, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';

interface Ids {
  group: number | string;
  registry: number;
  upstream: number;
  link: number;
  entry: string;
}

type Row = [route: string, method: string, path: (ids: Ids) => string, body: ((ids: Ids) => unknown) | undefined, reporter: number];

const VR = '/api/v4/virtual_registries/container';
const GROUP = (ids: Ids) => `/api/v4/groups/${encodeURIComponent(String(ids.group))}/-/virtual_registries`;
const UNREACHABLE = 'http://127.0.0.1:9';

/** Every route, with the status a reporter of the group gets (reads 200, changes 403, settings 403). */
const ROUTES: Row[] = [
  ['get registry', 'GET', (i) => `${VR}/registries/${i.registry}`, undefined, 200],
  ['update registry', 'PATCH', (i) => `${VR}/registries/${i.registry}`, () => ({ description: 'x' }), 403],
  ['delete registry', 'DELETE', (i) => `${VR}/registries/${i.registry}`, undefined, 403],
  ["list group's registries", 'GET', (i) => `${GROUP(i)}/container/registries`, undefined, 200],
  ['create registry in group', 'POST', (i) => `${GROUP(i)}/container/registries`, () => ({ name: 'new' }), 403],
  ["list group's upstreams", 'GET', (i) => `${GROUP(i)}/container/upstreams`, undefined, 200],
  ['test new upstream of group', 'POST', (i) => `${GROUP(i)}/container/upstreams/test`, () => ({ url: UNREACHABLE }), 403],
  ["list registry's upstreams", 'GET', (i) => `${VR}/registries/${i.registry}/upstreams`, undefined, 200],
  ['create upstream in registry', 'POST', (i) => `${VR}/registries/${i.registry}/upstreams`, () => ({ name: 'new', url: UNREACHABLE }), 403],
  ['get upstream', 'GET', (i) => `${VR}/upstreams/${i.upstream}`, undefined, 200],
  ['update upstream', 'PATCH', (i) => `${VR}/upstreams/${i.upstream}`, () => ({ description: 'x' }), 403],
  ['delete upstream', 'DELETE', (i) => `${VR}/upstreams/${i.upstream}`, undefined, 403],
  ['test upstream', 'POST', (i) => `${VR}/upstreams/${i.upstream}/test`, () => ({}), 403],
  ['link upstream to registry', 'POST', () => `${VR}/registry_upstreams`, (i) => ({ registry_id: i.registry, upstream_id: i.upstream }), 403],
  ['move registry upstream', 'PATCH', (i) => `${VR}/registry_upstreams/${i.link}`, () => ({ position: 1 }), 403],
  ['delete registry upstream', 'DELETE', (i) => `${VR}/registry_upstreams/${i.link}`, undefined, 403],
  ["list upstream's cache entries", 'GET', (i) => `${VR}/upstreams/${i.upstream}/cache_entries`, undefined, 200],
  ['delete cache entry', 'DELETE', (i) => `${VR}/cache_entries/${i.entry}`, undefined, 403],
  ["purge upstream's cache", 'DELETE', (i) => `${VR}/upstreams/${i.upstream}/cache`, undefined, 403],
  ["purge registry's cache", 'DELETE', (i) => `${VR}/registries/${i.registry}/cache`, undefined, 403],
  [
    'authorize cache entry upload',
    'POST',
    (i) => `${VR}/upstreams/${i.upstream}/cache_entries/authorize_upload`,
    () => ({ relative_path: '/library/x/manifests/latest' }),
    403,
  ],
  ['get cleanup policy', 'GET', (i) => `${GROUP(i)}/cleanup/policy`, undefined, 403],
  ['create cleanup policy', 'POST', (i) => `${GROUP(i)}/cleanup/policy`, () => ({}), 403],
  ['update cleanup policy', 'PATCH', (i) => `${GROUP(i)}/cleanup/policy`, () => ({ enabled: true }), 403],
  ['replace cleanup policy', 'PUT', (i) => `${GROUP(i)}/cleanup/policy`, () => ({ enabled: true }), 403],
  ['delete cleanup policy', 'DELETE', (i) => `${GROUP(i)}/cleanup/policy`, undefined, 403],
];

/** The routes that name the group itself (by id or by full path). */
const GROUP_ROUTES = ROUTES.filter(([, , path]) => path({ group: 1, registry: 1, upstream: 1, link: 1, entry: 'e' }).startsWith('/api/v4/groups/'));

const send = (api: AdminApi, [, method, path, body]: Row, ids: Ids): Promise<ApiResponse> => api.request(method, path(ids), body?.(ids));
const answer = (res: ApiResponse) => ({ status: res.status, body: res.body });

describe.each(databaseTargets())('admin API: resources of groups the caller cannot see (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let stranger: AdminApi;
  let reporter: AdminApi;
  let guest: AdminApi;
  let real: Ids;
  let realByPath: Ids;
  let missing: Ids;

  beforeAll(async () => {
    app = await startTestApp({}, { database });
    admin = new AdminApi(app.url);
    const group = await admin.createGroup('private-team');
    const other = await admin.createGroup('stranger-team');
    stranger = admin.as(await admin.createUserToken('stranger', { groupId: other.id, role: 'owner' }));
    reporter = admin.as(await admin.createUserToken('reporter', { groupId: group.id, role: 'reporter' }));
    guest = admin.as(await admin.createUserToken('guest', { groupId: group.id, role: 'guest' }));
    const registry = (await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'hub' })).body;
    const upstream = (await admin.expect(201, 'POST', `${VR}/registries/${registry.id}/upstreams`, { name: 'hub', url: UNREACHABLE })).body;
    const layer = Buffer.from('a cached layer');
    const uploaded = await fetch(
      `${app.url}${VR}/upstreams/${upstream.id}/cache_entries/upload?relative_path=${encodeURIComponent(`/library/x/blobs/sha256:${createHash('sha256').update(layer).digest('hex')}`)}`,
      { method: 'POST', headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/octet-stream' }, body: layer },
    );
    expect(uploaded.status).toBe(201);
    const entry = ((await uploaded.json()) as { id: string }).id;
    await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/cleanup/policy`, {});
    real = { group: group.id, registry: registry.id, upstream: upstream.id, link: upstream.registry_upstream.id, entry };
    realByPath = { ...real, group: group.path };
    // ids of nothing at all (the cache entry id names an entry of an upstream that does not exist)
    missing = {
      group: 999999,
      registry: 999999,
      upstream: 999999,
      link: 999999,
      entry: Buffer.from('999999 /library/x/manifests/latest').toString('base64url'),
    };
  });
  afterAll(async () => app?.close());

  it.each(ROUTES)('%s: a non-member gets the 404 of a nonexistent id', async (...row) => {
    const hidden = await send(stranger, row, real);
    const absent = await send(stranger, row, missing);
    expect(absent.status).toBe(404);
    expect(answer(hidden)).toEqual(answer(absent));
  });

  it.each(GROUP_ROUTES)('%s: a group path the caller cannot see is as unknown as a path that does not exist', async (...row) => {
    const hidden = await send(stranger, row, realByPath);
    const absent = await send(stranger, row, { ...missing, group: 'no-such-group' });
    expect(absent.status).toBe(404);
    expect(answer(hidden)).toEqual(answer(absent));
  });

  it.each(ROUTES)('%s: members see the group, and get 403 when their role is too low', async (...row) => {
    expect((await send(reporter, row, real)).status).toBe(row[4]);
    expect((await send(guest, row, real)).status).toBe(403);
  });

  it('refused callers changed nothing: everything is still there for the admin', async () => {
    expect((await admin.get(`${VR}/registries/${real.registry}`)).body.registry_upstreams).toHaveLength(1);
    expect((await admin.get(`${VR}/upstreams/${real.upstream}/cache_entries`)).body.map((e: { id: string }) => e.id)).toEqual([real.entry]);
    expect((await admin.get(`${GROUP(real)}/cleanup/policy`)).status).toBe(200);
  });
});
