/**
 * Admin API: virtual registries (GitLab's container virtual registry API), on the embedded database and
 * on Postgres when DATABASE_URL is set. Success, validation errors, permissions and not-found.
 */
import { DataSource } from 'typeorm';
import { AdminApi } from './support/admin-api.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';

const REGISTRIES = (group: number | string) => `/api/v4/groups/${group}/-/virtual_registries/container/registries`;
const REGISTRY = (id: number | string) => `/api/v4/virtual_registries/container/registries/${id}`;

describe.each(databaseTargets())('admin API: registries (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let group: { id: number; path: string };
  let other: { id: number; path: string };
  let maintainer: AdminApi;
  let reporter: AdminApi;
  let guest: AdminApi;
  let outsider: AdminApi;

  beforeAll(async () => {
    app = await startTestApp({ REGISTRIES_PER_GROUP: '4' }, { database });
    admin = new AdminApi(app.url);
    group = await admin.createGroup('platform');
    other = await admin.createGroup('other-team');
    maintainer = admin.as(await admin.createUserToken('mia', { groupId: group.id, role: 'maintainer' }));
    reporter = admin.as(await admin.createUserToken('rita', { groupId: group.id, role: 'reporter' }));
    guest = admin.as(await admin.createUserToken('gus', { groupId: group.id, role: 'guest' }));
    outsider = admin.as(await admin.createUserToken('olga', { groupId: other.id, role: 'owner' }));
  });

  afterAll(async () => {
    await app?.close();
  });

  it('creates, reads, lists, updates and deletes a registry with GitLab fields', async () => {
    const created = await maintainer.post(REGISTRIES(group.id), { name: 'docker-hub', description: 'Docker Hub cache' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      id: expect.any(Number),
      group_id: group.id,
      name: 'docker-hub',
      description: 'Docker Hub cache',
      anonymous_pull: false,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const id = created.body.id as number;

    const one = await reporter.get(REGISTRY(id));
    expect(one.status).toBe(200);
    expect(one.body).toEqual({ ...created.body, registry_upstreams: [] });

    const list = await reporter.get(REGISTRIES(group.id));
    expect(list.status).toBe(200);
    expect(list.body).toEqual([created.body]);
    expect(list.headers.get('x-total')).toBe('1');
    expect(list.headers.get('x-page')).toBe('1');
    expect(list.headers.get('x-per-page')).toBe('20');
    expect(list.headers.get('x-next-page')).toBe('');

    // the group may be named by its path too
    expect((await reporter.get(REGISTRIES(group.path))).body).toEqual([created.body]);

    const renamed = await maintainer.patch(REGISTRY(id), { name: 'hub' });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ id, name: 'hub', description: 'Docker Hub cache' });
    expect(new Date(renamed.body.updated_at).getTime()).toBeGreaterThanOrEqual(new Date(created.body.updated_at).getTime());
    const cleared = await maintainer.patch(REGISTRY(id), { description: null });
    expect(cleared.body).toMatchObject({ name: 'hub', description: null });

    expect((await maintainer.delete(REGISTRY(id))).status).toBe(204);
    expect((await maintainer.get(REGISTRY(id))).status).toBe(404);
    expect((await maintainer.delete(REGISTRY(id))).status).toBe(404);
  });

  it('paginates with X-Total, X-Page, X-Per-Page, X-Next-Page and Link', async () => {
    const g = await admin.createGroup('paged');
    for (const name of ['a', 'b', 'c']) await admin.expect(201, 'POST', REGISTRIES(g.id), { name });
    const first = await admin.get(`${REGISTRIES(g.id)}?per_page=2`);
    expect(first.body.map((r: { name: string }) => r.name)).toEqual(['a', 'b']);
    expect(first.headers.get('x-total')).toBe('3');
    expect(first.headers.get('x-total-pages')).toBe('2');
    expect(first.headers.get('x-next-page')).toBe('2');
    const links = Object.fromEntries(
      (first.headers.get('link') ?? '').split(', ').map((l) => {
        const [, url, rel] = /^<([^>]+)>; rel="(\w+)"$/.exec(l)!;
        return [rel, new URL(url)];
      }),
    );
    expect(Object.keys(links).sort()).toEqual(['first', 'last', 'next']);
    expect([links.next.pathname, links.next.searchParams.get('page'), links.next.searchParams.get('per_page')]).toEqual([REGISTRIES(g.id), '2', '2']);
    const second = await admin.get(`${REGISTRIES(g.id)}?page=2&per_page=2`);
    expect(second.body.map((r: { name: string }) => r.name)).toEqual(['c']);
    expect(second.headers.get('x-page')).toBe('2');
    expect(second.headers.get('x-next-page')).toBe('');
    expect(second.headers.get('link')).toContain('rel="prev"');
    expect((await admin.get(`${REGISTRIES(g.id)}?per_page=0`)).status).toBe(400);
    expect((await admin.get(`${REGISTRIES(g.id)}?page=abc`)).status).toBe(400);
  });

  it('answers 400 with field messages for invalid input', async () => {
    const missing = await maintainer.post(REGISTRIES(group.id), { description: 'no name' });
    expect(missing.status).toBe(400);
    expect(JSON.stringify(missing.body.message)).toContain('name');

    const blank = await maintainer.post(REGISTRIES(group.id), { name: '   ' });
    expect(blank.status).toBe(400);

    const long = await maintainer.post(REGISTRIES(group.id), { name: 'x'.repeat(256) });
    expect(long.status).toBe(400);
    expect(JSON.stringify(long.body.message)).toContain('name');

    const longDescription = await maintainer.post(REGISTRIES(group.id), { name: 'ok', description: 'd'.repeat(1025) });
    expect(longDescription.status).toBe(400);
    expect(JSON.stringify(longDescription.body.message)).toContain('description');

    const wrongType = await maintainer.post(REGISTRIES(group.id), { name: 42 });
    expect(wrongType.status).toBe(400);

    const created = await maintainer.expect(201, 'POST', REGISTRIES(group.id), { name: 'unique-name' });
    const duplicate = await maintainer.post(REGISTRIES(group.id), { name: 'unique-name' });
    expect(duplicate.status).toBe(400);
    expect(duplicate.body.message).toEqual({ name: ['has already been taken'] });
    // the same name in another group is fine
    expect((await admin.post(REGISTRIES(other.id), { name: 'unique-name' })).status).toBe(201);

    const nothing = await maintainer.patch(REGISTRY(created.body.id), {});
    expect(nothing.status).toBe(400);
    const renameToTaken = await maintainer.post(REGISTRIES(group.id), { name: 'second' });
    expect((await maintainer.patch(REGISTRY(renameToTaken.body.id), { name: 'unique-name' })).status).toBe(400);

    const malformed = await maintainer.request('POST', REGISTRIES(group.id), '{"name": ');
    expect(malformed.status).toBe(400);
  });

  it('enforces REGISTRIES_PER_GROUP, also under concurrent creates', async () => {
    const g = await admin.createGroup('limited');
    const results = await Promise.all(['r1', 'r2', 'r3', 'r4', 'r5', 'r6'].map((name) => admin.post(REGISTRIES(g.id), { name })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(4);
    const refused = results.filter((r) => r.status === 400);
    expect(refused).toHaveLength(2);
    expect(JSON.stringify(refused[0].body.message)).toContain('maximum');
    expect((await admin.get(REGISTRIES(g.id))).body).toHaveLength(4);
  });

  it('checks roles: reporter reads, maintainer writes, others see nothing', async () => {
    const registry = (await maintainer.expect(201, 'POST', REGISTRIES(group.id), { name: 'roles' })).body;

    expect((await reporter.post(REGISTRIES(group.id), { name: 'nope' })).status).toBe(403);
    expect((await reporter.patch(REGISTRY(registry.id), { name: 'nope' })).status).toBe(403);
    expect((await reporter.delete(REGISTRY(registry.id))).status).toBe(403);

    // a guest is a member but below reporter: it may see the group exists, not read its registries
    expect((await guest.get(REGISTRIES(group.id))).status).toBe(403);
    expect((await guest.get(REGISTRY(registry.id))).status).toBe(403);

    // a non-member gets 404 everywhere, as for a registry that does not exist
    for (const res of [
      await outsider.get(REGISTRIES(group.id)),
      await outsider.post(REGISTRIES(group.id), { name: 'x' }),
      await outsider.get(REGISTRY(registry.id)),
      await outsider.patch(REGISTRY(registry.id), { name: 'x' }),
      await outsider.delete(REGISTRY(registry.id)),
    ]) {
      expect(res.status).toBe(404);
    }

    // no token, a bad token, a token without the api scope
    expect((await fetch(`${app.url}${REGISTRY(registry.id)}`)).status).toBe(401);
    expect((await admin.as('cvrpat-not-a-token-000000000000000000').get(REGISTRY(registry.id))).status).toBe(401);
    const readOnly = admin.as(await admin.createUserToken('pull-only', { groupId: group.id, role: 'owner' }, ['read_virtual_registry']));
    expect((await readOnly.get(REGISTRY(registry.id))).status).toBe(403);

    expect((await maintainer.get(REGISTRY(registry.id))).status).toBe(200);
  });

  it('answers 404 for unknown groups and registries, and for ids that cannot exist', async () => {
    expect((await admin.get(REGISTRIES(999999))).status).toBe(404);
    expect((await admin.get(REGISTRIES('no-such-group'))).status).toBe(404);
    expect((await admin.post(REGISTRIES(999999), { name: 'x' })).status).toBe(404);
    expect((await admin.get(REGISTRY(999999))).status).toBe(404);
    expect((await admin.get(REGISTRY('99999999999999'))).status).toBe(404);
    expect((await admin.patch(REGISTRY(999999), { name: 'x' })).status).toBe(404);
    expect((await admin.delete(REGISTRY(999999))).status).toBe(404);
    expect((await admin.get(REGISTRY('abc'))).status).toBeGreaterThanOrEqual(400);
    expect((await admin.get(REGISTRY('abc'))).status).toBeLessThan(500);
  });

  it('deleting a registry deletes the upstreams no other registry uses', async () => {
    const g = await admin.createGroup('cascade');
    const a = (await admin.expect(201, 'POST', REGISTRIES(g.id), { name: 'a' })).body;
    const b = (await admin.expect(201, 'POST', REGISTRIES(g.id), { name: 'b' })).body;
    const only = (await admin.expect(201, 'POST', `${REGISTRY(a.id)}/upstreams`, { name: 'only-a', url: 'http://127.0.0.1:1' })).body;
    const shared = (await admin.expect(201, 'POST', `${REGISTRY(a.id)}/upstreams`, { name: 'shared', url: 'http://127.0.0.1:2' })).body;
    await admin.expect(201, 'POST', '/api/v4/virtual_registries/container/registry_upstreams', { registry_id: b.id, upstream_id: shared.id });

    await admin.expect(204, 'DELETE', REGISTRY(a.id));
    expect((await admin.get(`/api/v4/virtual_registries/container/upstreams/${only.id}`)).status).toBe(404);
    const kept = await admin.expect(200, 'GET', `/api/v4/virtual_registries/container/upstreams/${shared.id}`);
    expect(kept.body.registry_upstreams).toEqual([{ id: expect.any(Number), registry_id: b.id, position: 1 }]);

    const rows = await app.app.get(DataSource).query('SELECT count(*)::int AS n FROM registry_upstreams WHERE registry_id = $1', [a.id]);
    expect(rows[0].n).toBe(0);
  });
});
