/**
 * Admin API: the ordered association of upstreams with registries. Positions stay 1..n, unique and
 * without gaps through appends, moves, removals and upstream deletions, also under concurrent requests.
 */
import { DataSource } from 'typeorm';
import { AdminApi } from './support/admin-api.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';

const REGISTRIES = (group: number) => `/api/v4/groups/${group}/-/virtual_registries/container/registries`;
const REGISTRY_UPSTREAMS = (registry: number) => `/api/v4/virtual_registries/container/registries/${registry}/upstreams`;
const LINKS = '/api/v4/virtual_registries/container/registry_upstreams';
const LINK = (id: number) => `${LINKS}/${id}`;
const UPSTREAM = (id: number) => `/api/v4/virtual_registries/container/upstreams/${id}`;

describe.each(databaseTargets())('admin API: registry upstreams (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let db: DataSource;
  let group: { id: number };
  let port = 40000;

  /** Distinct upstream URLs (nothing listens there; these tests never contact them). */
  const nextUrl = () => `http://127.0.0.1:${port++}`;

  const positions = async (registryId: number): Promise<{ upstream_id: number; position: number }[]> =>
    (await db.query('SELECT upstream_id, position FROM registry_upstreams WHERE registry_id = $1 ORDER BY position', [registryId])).map(
      (r: { upstream_id: number; position: number }) => ({ upstream_id: Number(r.upstream_id), position: Number(r.position) }),
    );

  const order = async (registryId: number): Promise<number[]> => (await positions(registryId)).map((p) => p.upstream_id);

  /** A registry with `n` upstreams created in it; returns the registry id and the upstream ids in order. */
  const registryWith = async (name: string, n: number, inGroup = group.id): Promise<{ registryId: number; upstreams: number[]; links: number[] }> => {
    const registry = (await admin.expect(201, 'POST', REGISTRIES(inGroup), { name })).body;
    const upstreams: number[] = [];
    const links: number[] = [];
    for (let i = 0; i < n; i++) {
      const created = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(registry.id), { name: `${name}-u${i + 1}`, url: nextUrl() })).body;
      upstreams.push(created.id);
      links.push(created.registry_upstream.id);
    }
    return { registryId: registry.id, upstreams, links };
  };

  beforeAll(async () => {
    app = await startTestApp({ REGISTRIES_PER_GROUP: '50', UPSTREAMS_PER_REGISTRY: '5' }, { database });
    admin = new AdminApi(app.url);
    db = app.app.get(DataSource);
    group = await admin.createGroup('links');
  });

  afterAll(async () => {
    await app?.close();
  });

  it('appends new upstreams at max + 1 and lists them in position order', async () => {
    const { registryId, upstreams, links } = await registryWith('append', 3);
    expect(await positions(registryId)).toEqual(upstreams.map((upstream_id, i) => ({ upstream_id, position: i + 1 })));

    const listed = await admin.expect(200, 'GET', REGISTRY_UPSTREAMS(registryId));
    expect(listed.body.map((u: { id: number; registry_upstream: unknown }) => [u.id, u.registry_upstream])).toEqual(
      upstreams.map((id, i) => [id, { id: links[i], registry_id: registryId, position: i + 1 }]),
    );

    const registry = await admin.expect(200, 'GET', `/api/v4/virtual_registries/container/registries/${registryId}`);
    expect(registry.body.registry_upstreams).toEqual(upstreams.map((upstream_id, i) => ({ id: links[i], position: i + 1, upstream_id })));
  });

  it('associates an existing upstream with another registry (POST registry_upstreams)', async () => {
    const source = await registryWith('source', 1);
    const target = await registryWith('target', 2);
    const linked = await admin.post(LINKS, { registry_id: target.registryId, upstream_id: source.upstreams[0] });
    expect(linked.status).toBe(201);
    expect(linked.body).toEqual({ id: expect.any(Number), registry_id: target.registryId, upstream_id: source.upstreams[0], position: 3 });

    const again = await admin.post(LINKS, { registry_id: target.registryId, upstream_id: source.upstreams[0] });
    expect(again.status).toBe(409);

    const upstream = await admin.expect(200, 'GET', UPSTREAM(source.upstreams[0]));
    expect(upstream.body.registry_upstreams).toEqual([
      { id: source.links[0], registry_id: source.registryId, position: 1 },
      { id: linked.body.id, registry_id: target.registryId, position: 3 },
    ]);
  });

  it('validates the association and its position', async () => {
    const { registryId, upstreams, links } = await registryWith('validate', 2);
    expect((await admin.post(LINKS, { registry_id: registryId })).status).toBe(400);
    expect((await admin.post(LINKS, { registry_id: 'x', upstream_id: upstreams[0] })).status).toBe(400);
    expect((await admin.post(LINKS, { registry_id: 999999, upstream_id: upstreams[0] })).status).toBe(404);
    expect((await admin.post(LINKS, { registry_id: registryId, upstream_id: 999999 })).status).toBe(404);
    expect((await admin.patch(LINK(links[0]), {})).status).toBe(400);
    expect((await admin.patch(LINK(links[0]), { position: 0 })).status).toBe(400);
    expect((await admin.patch(LINK(links[0]), { position: 6 })).status).toBe(400);
    expect((await admin.patch(LINK(links[0]), { position: 1.5 })).status).toBe(400);
    expect((await admin.patch(LINK(999999), { position: 1 })).status).toBe(404);
    expect((await admin.delete(LINK(999999))).status).toBe(404);

    // an upstream of another group cannot be linked, and looks as if it did not exist
    const otherGroup = await admin.createGroup('links-other');
    const foreign = await registryWith('foreign', 1, otherGroup.id);
    expect((await admin.post(LINKS, { registry_id: registryId, upstream_id: foreign.upstreams[0] })).status).toBe(404);
    expect(await order(registryId)).toEqual(upstreams);
  });

  it('refuses a sixth upstream (UPSTREAMS_PER_REGISTRY), created or associated', async () => {
    const full = await registryWith('full', 5);
    const created = await admin.post(REGISTRY_UPSTREAMS(full.registryId), { name: 'sixth', url: nextUrl() });
    expect(created.status).toBe(400);
    expect(JSON.stringify(created.body.message)).toContain('maximum');
    const spare = await registryWith('spare', 1);
    expect((await admin.post(LINKS, { registry_id: full.registryId, upstream_id: spare.upstreams[0] })).status).toBe(400);
    expect((await positions(full.registryId)).map((p) => p.position)).toEqual([1, 2, 3, 4, 5]);
  });

  it('moves an upstream and shifts the others; a position past the end moves it last', async () => {
    const {
      registryId,
      upstreams: [a, b, c, d],
      links,
    } = await registryWith('move', 4);
    const moved = await admin.patch(LINK(links[3]), { position: 1 });
    expect(moved.status).toBe(200);
    expect(moved.body).toEqual({ id: links[3], registry_id: registryId, upstream_id: d, position: 1 });
    expect(await order(registryId)).toEqual([d, a, b, c]);

    await admin.expect(200, 'PATCH', LINK(links[3]), { position: 3 });
    expect(await order(registryId)).toEqual([a, b, d, c]);

    const last = await admin.expect(200, 'PATCH', LINK(links[0]), { position: 5 });
    expect(last.body.position).toBe(4);
    expect(await order(registryId)).toEqual([b, d, c, a]);

    await admin.expect(200, 'PATCH', LINK(links[2]), { position: 3 });
    expect(await order(registryId)).toEqual([b, d, c, a]);
  });

  it('closes the gap when an association or an upstream is deleted', async () => {
    const {
      registryId,
      upstreams: [a, b, c, d],
      links,
    } = await registryWith('gaps', 4);
    expect((await admin.delete(LINK(links[1]))).status).toBe(204);
    expect(await positions(registryId)).toEqual([
      { upstream_id: a, position: 1 },
      { upstream_id: c, position: 2 },
      { upstream_id: d, position: 3 },
    ]);
    // the upstream itself stays
    expect((await admin.get(UPSTREAM(b))).status).toBe(200);

    // deleting an upstream closes the gaps in every registry it was in
    const other = (await admin.expect(201, 'POST', REGISTRIES(group.id), { name: 'gaps-2' })).body;
    await admin.expect(201, 'POST', LINKS, { registry_id: other.id, upstream_id: d });
    await admin.expect(201, 'POST', LINKS, { registry_id: other.id, upstream_id: c });
    await admin.expect(204, 'DELETE', UPSTREAM(c));
    expect(await positions(registryId)).toEqual([
      { upstream_id: a, position: 1 },
      { upstream_id: d, position: 2 },
    ]);
    expect(await positions(other.id)).toEqual([{ upstream_id: d, position: 1 }]);
  });

  it('keeps positions 1..n, unique and gapless under 10 concurrent reorder and delete requests', async () => {
    for (let round = 0; round < 3; round++) {
      const { registryId, links } = await registryWith(`race-${round}`, 5);
      const requests = [
        admin.patch(LINK(links[4]), { position: 1 }),
        admin.patch(LINK(links[0]), { position: 5 }),
        admin.delete(LINK(links[2])),
        admin.patch(LINK(links[1]), { position: 4 }),
        admin.patch(LINK(links[3]), { position: 2 }),
        admin.delete(LINK(links[1])),
        admin.patch(LINK(links[2]), { position: 1 }),
        admin.patch(LINK(links[4]), { position: 3 }),
        admin.delete(LINK(links[0])),
        admin.patch(LINK(links[3]), { position: 5 }),
      ];
      const results = await Promise.all(requests);
      for (const res of results) expect([200, 204, 404]).toContain(res.status);
      const after = await positions(registryId);
      expect(after.map((p) => p.position)).toEqual(after.map((_, i) => i + 1));
      expect(new Set(after.map((p) => p.upstream_id)).size).toBe(after.length);
      // each delete that answered 204 removed exactly one association
      const deleted = results.filter((r) => r.status === 204).length;
      expect(after).toHaveLength(5 - deleted);
      const listed = await admin.expect(200, 'GET', REGISTRY_UPSTREAMS(registryId));
      expect(listed.body.map((u: { registry_upstream: { position: number } }) => u.registry_upstream.position)).toEqual(after.map((p) => p.position));
    }
  });

  it('checks roles on associations', async () => {
    const { registryId, upstreams, links } = await registryWith('roles', 2);
    const reporter = admin.as(await admin.createUserToken('link-reporter', { groupId: group.id, role: 'reporter' }));
    const stranger = admin.as(await admin.createUserToken('link-stranger'));
    expect((await reporter.patch(LINK(links[0]), { position: 2 })).status).toBe(403);
    expect((await reporter.delete(LINK(links[0]))).status).toBe(403);
    expect((await reporter.post(LINKS, { registry_id: registryId, upstream_id: upstreams[0] })).status).toBe(403);
    expect((await stranger.patch(LINK(links[0]), { position: 2 })).status).toBe(404);
    expect((await stranger.delete(LINK(links[0]))).status).toBe(404);
    expect((await stranger.post(LINKS, { registry_id: registryId, upstream_id: upstreams[0] })).status).toBe(404);
    expect(await order(registryId)).toEqual(upstreams);
  });
});
