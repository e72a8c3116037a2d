/**
 * Admin API: cache entries (list with search and pagination, delete one, purge an upstream's or a
 * registry's cache through the queued MARK_FOR_DESTRUCTION job) and the CreateOrUpdate service the
 * background caching worker commits with.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { CacheEntryCreateOrUpdateService, type CacheEntryInput } from '../src/cache-entries/cache-entry-create-or-update.service.js';
import { CacheEntryLookupService } from '../src/cache-entries/cache-entry-lookup.service.js';
import { CacheEntry, CacheEntryStatus } from '../src/cache-entries/cache-entry.entity.js';
import { encodeCacheEntryId } from '../src/cache-entries/cache-entry-id.js';
import { AdminApi, eventually } from './support/admin-api.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';

const REGISTRIES = (group: number) => `/api/v4/groups/${group}/-/virtual_registries/container/registries`;
const REGISTRY = (id: number) => `/api/v4/virtual_registries/container/registries/${id}`;
const REGISTRY_UPSTREAMS = (registry: number) => `${REGISTRY(registry)}/upstreams`;
const UPSTREAM = (id: number) => `/api/v4/virtual_registries/container/upstreams/${id}`;
const ENTRIES = (upstream: number) => `${UPSTREAM(upstream)}/cache_entries`;
const ENTRY = (id: string) => `/api/v4/virtual_registries/container/cache_entries/${id}`;

const digestOf = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

const FAKE_UPSTREAM_HOST = '127.0.0.2';

describe.each(databaseTargets())('admin API: cache entries (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let db: DataSource;
  let entries: CacheEntryCreateOrUpdateService;
  let group: { id: number };
  // Never-contacted upstreams live on 127.0.0.2: a port counter on 127.0.0.1 could hand out the port a real
  // test server gets later (ephemeral ports start at 32768), and a group may not have two upstreams with one URL.
  let port = 41000;

  const statuses = async (upstreamId: number): Promise<Record<string, string[]>> => {
    const rows = (await db.query('SELECT relative_path, status FROM cache_entries WHERE upstream_id = $1 ORDER BY id', [upstreamId])) as {
      relative_path: string;
      status: string;
    }[];
    const out: Record<string, string[]> = {};
    for (const r of rows) (out[r.relative_path] ??= []).push(r.status);
    return out;
  };

  const seed = (upstreamId: number, relativePath: string, extra: Partial<CacheEntryInput> = {}) =>
    entries.execute(
      null,
      {
        upstreamId,
        relativePath,
        digest: digestOf(relativePath),
        size: relativePath.length,
        contentType: 'application/vnd.oci.image.manifest.v1+json',
        ...extra,
      },
      { skipPermissionCheck: true },
    );

  const registryWithUpstream = async (name: string) => {
    const registry = (await admin.expect(201, 'POST', REGISTRIES(group.id), { name })).body;
    const upstream = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(registry.id), { name, url: `http://${FAKE_UPSTREAM_HOST}:${port++}` })).body;
    return { registryId: registry.id as number, upstreamId: upstream.id as number };
  };

  beforeAll(async () => {
    app = await startTestApp({ REGISTRIES_PER_GROUP: '20' }, { database });
    admin = new AdminApi(app.url);
    db = app.app.get(DataSource);
    entries = app.app.get(CacheEntryCreateOrUpdateService);
    group = await admin.createGroup('cache');
  });

  afterAll(async () => {
    await app?.close();
  });

  it('CreateOrUpdate upserts the one live entry atomically and stamps upstream_checked_at', async () => {
    const { upstreamId } = await registryWithUpstream('upsert');
    const first = await seed(upstreamId, 'library/alpine/manifests/latest', { upstreamEtag: '"v1"' });
    expect(first).toMatchObject({
      groupId: group.id,
      upstreamId,
      relativePath: '/library/alpine/manifests/latest',
      digest: digestOf('library/alpine/manifests/latest'),
      storageKey: digestOf('library/alpine/manifests/latest'),
      status: 'default',
      downloadsCount: 0,
      upstreamEtag: '"v1"',
    });
    const moved = digestOf('a new alpine');
    const second = await seed(upstreamId, '/library/alpine/manifests/latest', { digest: moved, size: 99, upstreamEtag: '"v2"' });
    expect(second.id).toBe(first.id);
    expect(second).toMatchObject({ digest: moved, size: 99, upstreamEtag: '"v2"', storageKey: moved });
    expect(second.upstreamCheckedAt.getTime()).toBeGreaterThanOrEqual(first.upstreamCheckedAt.getTime());

    // concurrent fills of the same path leave one live row
    await Promise.all(Array.from({ length: 8 }, (_, i) => seed(upstreamId, '/library/busybox/manifests/1', { size: i })));
    expect((await statuses(upstreamId))['/library/busybox/manifests/1']).toEqual(['default']);

    // the database refuses a second live row for the same path
    await expect(
      db.query(
        `INSERT INTO cache_entries (group_id, upstream_id, relative_path, digest, size, storage_key)
         VALUES ($1, $2, '/library/alpine/manifests/latest', $3, 1, 'k')`,
        [group.id, upstreamId, moved],
      ),
    ).rejects.toThrow(/duplicate key/);

    const invalid = (field: string) => ({ response: { message: { [field]: [expect.any(String)] } } });
    await expect(seed(upstreamId, '/x', { digest: 'sha256:nothex' })).rejects.toMatchObject(invalid('digest'));
    await expect(seed(upstreamId, '/x', { size: -1 })).rejects.toMatchObject(invalid('size'));
    await expect(seed(upstreamId, '/', {})).rejects.toMatchObject(invalid('relative_path'));
    await expect(seed(999999, '/x')).rejects.toMatchObject({ status: 404 });
  });

  it('CreateOrUpdate checks permissions unless skipPermissionCheck is set', async () => {
    const { upstreamId } = await registryWithUpstream('perm');
    const input = { upstreamId, relativePath: '/p/blobs/x', digest: digestOf('p'), size: 1 };
    await expect(entries.execute(null, input)).rejects.toThrow();
    const stranger = { kind: 'user' as const, userId: 999999, username: 'nobody', admin: false, scopes: ['api' as never], tokenId: 1 };
    await expect(entries.execute(stranger, input)).rejects.toMatchObject({ status: 404 });
    expect(await statuses(upstreamId)).toEqual({});
    await entries.execute(null, input, { skipPermissionCheck: true });
    expect(await statuses(upstreamId)).toEqual({ '/p/blobs/x': ['default'] });
  });

  it('the pull path finds the live entry of a path among upstreams in their order, as TypeORM would read it', async () => {
    const lookup = app.app.get(CacheEntryLookupService);
    const first = await registryWithUpstream('lookup-a');
    const second = await registryWithUpstream('lookup-b');
    const path = '/library/alpine/blobs/' + digestOf('lookup layer');
    await seed(first.upstreamId, path, { size: 2 ** 40, upstreamEtag: '"e"' });
    await seed(second.upstreamId, path);
    await seed(second.upstreamId, '/library/alpine/manifests/latest');
    await db.query(`UPDATE cache_entries SET downloads_count = 3 WHERE upstream_id = $1 AND relative_path = $2`, [first.upstreamId, path]);
    const typeorm = async (upstreamId: number) =>
      db.getRepository(CacheEntry).findOneByOrFail({ upstreamId, relativePath: path, status: CacheEntryStatus.DEFAULT });

    const found = await lookup.findLive([second.upstreamId, first.upstreamId], path);
    expect(found).toStrictEqual([await typeorm(second.upstreamId), await typeorm(first.upstreamId)]);
    expect(found[1]).toBeInstanceOf(CacheEntry);
    expect(found[1]).toMatchObject({ size: 2 ** 40, downloadsCount: 3, upstreamEtag: '"e"', status: 'default' });
    expect(typeof found[1].id).toBe('number');
    expect(found[1].createdAt).toBeInstanceOf(Date);
    expect((await lookup.findLive([first.upstreamId, second.upstreamId], path)).map((e) => e.upstreamId)).toEqual([first.upstreamId, second.upstreamId]);

    // only live rows, only these upstreams, only this path
    await lookup.markForDestruction(found[0].id);
    expect((await lookup.findLive([second.upstreamId, first.upstreamId], path)).map((e) => e.upstreamId)).toEqual([first.upstreamId]);
    expect(await lookup.findLive([second.upstreamId], path)).toEqual([]);
    expect(await lookup.findLive([], path)).toEqual([]);
    expect(await lookup.findLive([first.upstreamId], path + 'x')).toEqual([]);
  });

  it('lists live entries with GitLab fields, search and pagination', async () => {
    const { upstreamId } = await registryWithUpstream('listing');
    for (const path of [
      '/library/nginx/manifests/latest',
      '/library/nginx/manifests/1.27',
      '/library/alpine/manifests/3.20',
      '/library/alpine/blobs/' + digestOf('layer'),
    ]) {
      await seed(upstreamId, path);
    }
    const all = await admin.expect(200, 'GET', ENTRIES(upstreamId));
    expect(all.headers.get('x-total')).toBe('4');
    const nginx = all.body.find((e: { relative_path: string }) => e.relative_path === '/library/nginx/manifests/latest');
    expect(nginx).toEqual({
      id: encodeCacheEntryId(upstreamId, '/library/nginx/manifests/latest'),
      group_id: group.id,
      upstream_id: upstreamId,
      relative_path: '/library/nginx/manifests/latest',
      digest: digestOf('/library/nginx/manifests/latest'),
      size: '/library/nginx/manifests/latest'.length,
      content_type: 'application/vnd.oci.image.manifest.v1+json',
      upstream_etag: null,
      upstream_checked_at: expect.any(String),
      downloads_count: 0,
      downloaded_at: expect.any(String),
      file_sha1: null,
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect(Buffer.from(nginx.id, 'base64url').toString()).toBe(`${upstreamId} /library/nginx/manifests/latest`);

    const searched = await admin.expect(200, 'GET', `${ENTRIES(upstreamId)}?search=NGINX`);
    expect(searched.body.map((e: { relative_path: string }) => e.relative_path)).toEqual(['/library/nginx/manifests/1.27', '/library/nginx/manifests/latest']);
    const paged = await admin.expect(200, 'GET', `${ENTRIES(upstreamId)}?per_page=3&page=2`);
    expect(paged.body).toHaveLength(1);
    expect(paged.headers.get('x-page')).toBe('2');
    expect(paged.headers.get('x-total-pages')).toBe('2');
    expect((await admin.get(`${ENTRIES(upstreamId)}?search=%25`)).body).toEqual([]);
    expect((await admin.get(`${ENTRIES(upstreamId)}?per_page=101`)).status).toBe(400);
  });

  it('deletes one entry by id: it is marked pending_destruction and no longer listed', async () => {
    const { upstreamId } = await registryWithUpstream('delete-one');
    await seed(upstreamId, '/library/redis/manifests/7');
    await seed(upstreamId, '/library/redis/manifests/8');
    const id = encodeCacheEntryId(upstreamId, '/library/redis/manifests/7');
    expect((await admin.delete(ENTRY(id))).status).toBe(204);
    expect(await statuses(upstreamId)).toEqual({
      '/library/redis/manifests/7': ['pending_destruction'],
      '/library/redis/manifests/8': ['default'],
    });
    expect((await admin.get(ENTRIES(upstreamId))).body.map((e: { relative_path: string }) => e.relative_path)).toEqual(['/library/redis/manifests/8']);
    expect((await admin.delete(ENTRY(id))).status).toBe(404);
    // the path can be cached again, next to the purged row
    await seed(upstreamId, '/library/redis/manifests/7');
    expect((await statuses(upstreamId))['/library/redis/manifests/7']).toEqual(['pending_destruction', 'default']);

    // GitLab's form (standard alphabet, no leading slash) names the same entry
    const gitlabStyle = Buffer.from(`${upstreamId} library/redis/manifests/8`).toString('base64');
    expect((await admin.delete(ENTRY(gitlabStyle))).status).toBe(204);

    expect((await admin.delete(ENTRY('not-an-id!'))).status).toBe(404);
    expect((await admin.delete(ENTRY(encodeCacheEntryId(999999, '/x')))).status).toBe(404);
  });

  it('purges an upstream’s cache through the queued job, then destroys it', async () => {
    const { upstreamId } = await registryWithUpstream('purge-upstream');
    const { upstreamId: bystander } = await registryWithUpstream('bystander');
    for (let i = 0; i < 25; i++) await seed(upstreamId, `/img/manifests/${i}`);
    await seed(bystander, '/img/manifests/0');
    expect((await admin.delete(`${UPSTREAM(upstreamId)}/cache`)).status).toBe(204);
    // Marked, then destroyed by the destroy job the purge enqueues once it has marked them.
    await eventually(async () => Object.keys(await statuses(upstreamId)).length === 0);
    expect(await statuses(bystander)).toEqual({ '/img/manifests/0': ['default'] });
    expect((await admin.get(ENTRIES(upstreamId))).body).toEqual([]);
  });

  it('purges a registry’s cache: only the upstreams no other registry uses', async () => {
    const { registryId, upstreamId: exclusive } = await registryWithUpstream('purge-registry');
    const shared = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(registryId), { name: 'shared', url: `http://${FAKE_UPSTREAM_HOST}:${port++}` })).body.id;
    const other = (await admin.expect(201, 'POST', REGISTRIES(group.id), { name: 'purge-registry-other' })).body.id;
    await admin.expect(201, 'POST', '/api/v4/virtual_registries/container/registry_upstreams', { registry_id: other, upstream_id: shared });
    await seed(exclusive, '/a/manifests/1');
    await seed(shared, '/b/manifests/1');

    expect((await admin.delete(`${REGISTRY(registryId)}/cache`)).status).toBe(204);
    await eventually(async () => (await statuses(exclusive))['/a/manifests/1'] === undefined);
    expect(await statuses(shared)).toEqual({ '/b/manifests/1': ['default'] });
  });

  it('checks roles and answers 404 for what does not exist', async () => {
    const { registryId, upstreamId } = await registryWithUpstream('cache-roles');
    await seed(upstreamId, '/r/manifests/1');
    const id = encodeCacheEntryId(upstreamId, '/r/manifests/1');
    const reporter = admin.as(await admin.createUserToken('cache-reporter', { groupId: group.id, role: 'reporter' }));
    const stranger = admin.as(await admin.createUserToken('cache-stranger'));

    expect((await reporter.get(ENTRIES(upstreamId))).status).toBe(200);
    expect((await reporter.delete(ENTRY(id))).status).toBe(403);
    expect((await reporter.delete(`${UPSTREAM(upstreamId)}/cache`)).status).toBe(403);
    expect((await reporter.delete(`${REGISTRY(registryId)}/cache`)).status).toBe(403);
    for (const res of [
      await stranger.get(ENTRIES(upstreamId)),
      await stranger.delete(ENTRY(id)),
      await stranger.delete(`${UPSTREAM(upstreamId)}/cache`),
      await stranger.delete(`${REGISTRY(registryId)}/cache`),
    ]) {
      expect(res.status).toBe(404);
    }
    expect(await statuses(upstreamId)).toEqual({ '/r/manifests/1': ['default'] });

    expect((await admin.get(ENTRIES(999999))).status).toBe(404);
    expect((await admin.delete(`${UPSTREAM(999999)}/cache`)).status).toBe(404);
    expect((await admin.delete(`${REGISTRY(999999)}/cache`)).status).toBe(404);
  });

  it('the upstream test endpoint probes the first cached path, or library/alpine/manifests/latest', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(req.url?.includes('alpine') ? 404 : 200).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const registry = (await admin.expect(201, 'POST', REGISTRIES(group.id), { name: 'probe' })).body.id;
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const upstreamId = (await admin.expect(201, 'POST', REGISTRY_UPSTREAMS(registry), { name: 'probe', url })).body.id;
      expect((await admin.expect(200, 'POST', `${UPSTREAM(upstreamId)}/test`)).body).toEqual({ success: true });
      await seed(upstreamId, 'library/probe/manifests/v1');
      expect((await admin.expect(200, 'POST', `${UPSTREAM(upstreamId)}/test`)).body).toEqual({ success: true });
      expect(seen).toEqual(['HEAD /v2/library/alpine/manifests/latest', 'HEAD /v2/library/probe/manifests/v1']);
    } finally {
      server.close();
    }
  });
});
