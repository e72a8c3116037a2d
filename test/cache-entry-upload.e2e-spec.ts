/**
 * Pre-seeding a cache for an air-gapped site: authorize_upload + upload, then pulls are served from
 * the seeded cache although the upstream is unreachable. Digests are verified; nothing partial is kept.
 */
import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { BLOB_STORE, type BlobStore } from '../src/storage/blob-store.js';
import { startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';
import { createVirtualRegistry, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('cache-entry upload (pre-seeding)', () => {
  let app: TestApp;
  let vr: VirtualRegistry;
  let upstreamId: number;
  const layer = Buffer.alloc(300_000, 7);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }),
  );

  const upload = (path: string, body: Buffer, contentType = 'application/octet-stream', token = TEST_ADMIN_TOKEN) =>
    fetch(`${app.url}/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache_entries/upload?relative_path=${encodeURIComponent(path)}`, {
      method: 'POST',
      headers: { 'private-token': token, 'content-type': contentType },
      body,
    });

  beforeAll(async () => {
    app = await startTestApp({ MAX_CACHED_FILE_SIZE: '1MiB' });
    // An upstream nobody can reach: the site is air-gapped.
    vr = await createVirtualRegistry(app, [{ url: 'http://127.0.0.1:9' }]);
    upstreamId = vr.upstreamIds[0];
  }, 60_000);
  afterAll(() => app?.close());

  it('authorize_upload says where to send the bytes, the digest they must have and the size limit', async () => {
    const res = await fetch(`${app.url}/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache_entries/authorize_upload`, {
      method: 'POST',
      headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/json' },
      body: JSON.stringify({ relative_path: `/library/seeded/blobs/${sha256(layer)}` }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ method: 'POST', digest: sha256(layer), max_size: 1024 * 1024, relative_path: `/library/seeded/blobs/${sha256(layer)}` });
    expect(String(body.upload_url)).toContain(`/upstreams/${upstreamId}/cache_entries/upload?relative_path=`);

    const tooBig = await fetch(`${app.url}/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache_entries/authorize_upload`, {
      method: 'POST',
      headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/json' },
      body: JSON.stringify({ relative_path: `/library/seeded/blobs/${sha256(layer)}`, size: 2 * 1024 * 1024 }),
    });
    expect(tooBig.status).toBe(413);
  });

  it('refuses bytes that do not match the digest, leaving no entry and no object', async () => {
    const wrong = Buffer.from('not the layer');
    const res = await upload(`/library/seeded/blobs/${sha256(layer)}`, wrong);
    expect(res.status).toBe(400);
    const rows = await app.app.get(DataSource).query(`SELECT count(*)::int AS n FROM cache_entries WHERE digest = $1`, [sha256(layer)]);
    expect(rows[0].n).toBe(0);
    const store = app.app.get<BlobStore>(BLOB_STORE);
    expect(await store.stat(sha256(layer))).toBeUndefined();
    expect(await store.stat(sha256(wrong))).toBeUndefined();
    const temporary = [];
    for await (const t of store.listTemporary()) temporary.push(t);
    expect(temporary).toEqual([]);
  });

  it('refuses a body over MAX_CACHED_FILE_SIZE with 413 and bad paths with 400', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 1);
    expect((await upload(`/library/seeded/blobs/${sha256(big)}`, big)).status).toBe(413);
    expect((await upload('/library/seeded/tags/list', layer)).status).toBe(400);
    expect((await upload('/Library/../x/blobs/sha256:abc', layer)).status).toBe(400);
  });

  it('seeds blobs and a manifest by tag; pulls are then served with the upstream unreachable', async () => {
    for (const [path, bytes] of [
      [`/library/seeded/blobs/${sha256(layer)}`, layer],
      [`/library/seeded/blobs/${sha256(config)}`, config],
    ] as const) {
      const res = await upload(path, bytes);
      expect(res.status).toBe(201);
      expect(((await res.json()) as { digest: string }).digest).toBe(sha256(bytes));
    }
    const res = await upload('/library/seeded/manifests/1.0', manifest, 'application/vnd.oci.image.manifest.v1+json');
    expect(res.status).toBe(201);

    const byTag = await registryFetch(app, vr, 'library/seeded', 'manifests/1.0');
    expect(byTag.status).toBe(200);
    expect(byTag.headers.get('docker-content-digest')).toBe(sha256(manifest));
    expect(byTag.headers.get('content-type')).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(Buffer.from(await byTag.arrayBuffer()).equals(manifest)).toBe(true);
    expect((await registryFetch(app, vr, 'library/seeded', `manifests/${sha256(manifest)}`)).status).toBe(200);
    const blob = await registryFetch(app, vr, 'library/seeded', `blobs/${sha256(layer)}`);
    expect(blob.status).toBe(200);
    expect(sha256(Buffer.from(await blob.arrayBuffer()))).toBe(sha256(layer));
  });

  it('needs maintainer rights on the upstream group: a reporter gets 403, anonymous 401', async () => {
    const user = (await (
      await fetch(`${app.url}/api/v4/users`, {
        method: 'POST',
        headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'seed-reporter' }),
      })
    ).json()) as { id: number };
    await fetch(`${app.url}/api/v4/groups/${vr.groupId}/members`, {
      method: 'POST',
      headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: user.id, access_level: 20 }),
    });
    const pat = (await (
      await fetch(`${app.url}/api/v4/users/${user.id}/personal_access_tokens`, {
        method: 'POST',
        headers: { 'private-token': TEST_ADMIN_TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'reporter', scopes: ['api'] }),
      })
    ).json()) as { token: string };
    expect((await upload(`/library/seeded/blobs/${sha256(layer)}`, layer, 'application/octet-stream', pat.token)).status).toBe(403);
    const anonymous = await fetch(`${app.url}/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache_entries/upload?relative_path=x`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: layer,
    });
    expect(anonymous.status).toBe(401);
  });
});
