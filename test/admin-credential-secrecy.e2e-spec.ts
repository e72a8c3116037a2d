/**
 * Upstream credentials are encrypted at rest and never come back out: after creating upstreams with
 * passwords, every admin endpoint's answer (bodies and headers, successes and errors) is scanned for the
 * passwords and for token secrets, and the database columns are checked to hold AES-256-GCM ciphertext.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { encodeCacheEntryId } from '../src/cache-entries/cache-entry-id.js';
import { CacheEntryCreateOrUpdateService } from '../src/cache-entries/cache-entry-create-or-update.service.js';
import { CredentialEncryptionService, encryptionKeyId, parseEncryptionKey } from '../src/upstreams/credential-encryption.service.js';
import { GroupPermission } from '../src/accounts/actor.js';
import { UpstreamsService } from '../src/upstreams/upstreams.service.js';
import { AdminApi } from './support/admin-api.js';
import { sealedBeforeRowBinding } from './support/legacy-credentials.js';
import { databaseTargets, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';

const PASSWORDS = ['pw-Zq7!first-upstream-secret', 'pw-Xr9?second-upstream-secret', 'pw-Kt3#updated-upstream-secret'];
const OLD_KEY = 'a'.repeat(64);

describe.each(databaseTargets())('upstream credentials stay secret (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let db: DataSource;

  beforeAll(async () => {
    app = await startTestApp({}, { database });
    admin = new AdminApi(app.url);
    db = app.app.get(DataSource);
  });

  afterAll(async () => {
    await app?.close();
  });

  it('never returns a password or a token secret from any endpoint', async () => {
    const group = await admin.createGroup('secrets');
    const maintainerToken = await admin.createUserToken('keeper', { groupId: group.id, role: 'maintainer' });
    const reporterToken = await admin.createUserToken('watcher', { groupId: group.id, role: 'reporter' });
    const maintainer = admin.as(maintainerToken);
    const reporter = admin.as(reporterToken);

    const registry = (await maintainer.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'r' })).body;
    const base = '/api/v4/virtual_registries/container';
    const first = (
      await maintainer.expect(201, 'POST', `${base}/registries/${registry.id}/upstreams`, {
        name: 'one',
        url: 'http://127.0.0.1:9',
        username: 'u1',
        password: PASSWORDS[0],
      })
    ).body;
    const second = (
      await maintainer.expect(201, 'POST', `${base}/registries/${registry.id}/upstreams`, {
        name: 'two',
        url: 'http://127.0.0.1:10',
        username: 'u2',
        password: PASSWORDS[1],
      })
    ).body;
    await app.app
      .get(CacheEntryCreateOrUpdateService)
      .execute(
        null,
        { upstreamId: first.id, relativePath: '/library/alpine/manifests/latest', digest: `sha256:${'1'.repeat(64)}`, size: 10 },
        { skipPermissionCheck: true },
      );
    const entryId = encodeCacheEntryId(first.id, '/library/alpine/manifests/latest');

    // every route of the container virtual registry API, as maintainer and as reporter (403 bodies too)
    for (const api of [maintainer, reporter, admin]) {
      await api.get(`/api/v4/groups/${group.id}/-/virtual_registries/container/registries`);
      await api.get(`${base}/registries/${registry.id}`);
      await api.get(`${base}/registries/${registry.id}/upstreams`);
      await api.get(`/api/v4/groups/${group.id}/-/virtual_registries/container/upstreams`);
      await api.get(`/api/v4/groups/${group.path}/-/virtual_registries/container/upstreams?upstream_name=one`);
      await api.get(`${base}/upstreams/${first.id}`);
      await api.get(`${base}/upstreams/${second.id}`);
      await api.get(`${base}/upstreams/${first.id}/cache_entries`);
      await api.post(`${base}/upstreams/${first.id}/test`);
      await api.post(`${base}/upstreams/${first.id}/test`, { username: 'u1', password: PASSWORDS[0] });
      await api.post(`/api/v4/groups/${group.id}/-/virtual_registries/container/upstreams/test`, {
        url: 'http://127.0.0.1:9',
        username: 'u1',
        password: PASSWORDS[0],
      });
      await api.patch(`${base}/upstreams/${first.id}`, { username: 'u1' }); // 400: password missing
      await api.patch(`${base}/upstreams/${first.id}`, { url: 'not a url', username: 'u1', password: PASSWORDS[0] });
      await api.post(`${base}/registries/${registry.id}/upstreams`, { name: 'dup', url: 'http://127.0.0.1:9', username: 'u1', password: PASSWORDS[0] });
      await api.patch(`${base}/registries/${registry.id}`, { description: 'touched' });
    }
    await maintainer.expect(200, 'PATCH', `${base}/upstreams/${second.id}`, { username: 'u3', password: PASSWORDS[2], cache_validity_hours: 1 });
    await maintainer.get(`${base}/upstreams/${second.id}`);
    const link = (await maintainer.expect(200, 'GET', `${base}/registries/${registry.id}/upstreams`)).body[1].registry_upstream.id;
    await maintainer.expect(200, 'PATCH', `${base}/registry_upstreams/${link}`, { position: 1 });
    await maintainer.expect(204, 'DELETE', `${base}/cache_entries/${entryId}`);
    await maintainer.expect(204, 'DELETE', `${base}/upstreams/${first.id}/cache`);
    await maintainer.expect(204, 'DELETE', `${base}/registries/${registry.id}/cache`);
    await maintainer.expect(204, 'DELETE', `${base}/registry_upstreams/${link}`);
    const relinked = await maintainer.expect(201, 'POST', `${base}/registry_upstreams`, { registry_id: registry.id, upstream_id: second.id });
    expect(relinked.body).toEqual({ id: expect.any(Number), registry_id: registry.id, upstream_id: second.id, position: 2 });
    await maintainer.get(`${base}/upstreams/${second.id}`);
    await maintainer.expect(204, 'DELETE', `${base}/upstreams/${first.id}`);
    await maintainer.expect(204, 'DELETE', `${base}/registries/${registry.id}`);
    // the OpenAPI document shows the password as a write-only input, never a value
    await admin.get('/api/docs-json');

    expect(admin.transcript.length).toBeGreaterThan(60);
    const secrets = [...PASSWORDS, TEST_ADMIN_TOKEN, maintainerToken, reporterToken];
    // a token is shown once, in the answer that creates it; that is the only place a secret may appear
    const tokenCreation = /^\/api\/v4\/users\/\d+\/personal_access_tokens$/;
    for (const exchange of admin.transcript.filter((e) => !(e.method === 'POST' && tokenCreation.test(e.path)))) {
      for (const secret of secrets) {
        if (exchange.text.includes(secret) || exchange.headers.includes(secret)) {
          throw new Error(`${exchange.method} ${exchange.path} (${exchange.status}) returned a secret`);
        }
      }
    }
    const upstreamAnswers = admin.transcript.filter((e) => e.status < 300 && /\/upstreams/.test(e.path) && e.text.startsWith('{'));
    for (const e of upstreamAnswers) expect(e.text).not.toMatch(/password|ciphertext|credentials_key/);
  });

  it('stores passwords as AES-256-GCM ciphertext with a key id, and the generated key file is 0600', async () => {
    const group = await admin.createGroup('at-rest');
    const registry = (await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'r' })).body;
    const created = (
      await admin.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, {
        name: 'one',
        url: 'http://127.0.0.1:11',
        username: 'robot',
        password: PASSWORDS[0],
      })
    ).body;

    const [row] = await db.query('SELECT * FROM upstreams WHERE id = $1', [created.id]);
    expect(row.username).toBe('robot');
    expect(JSON.stringify(row)).not.toContain(PASSWORDS[0]);
    expect(row.password_ciphertext).toMatch(/^v2\./); // sealed for this row (AES-GCM associated data)
    const sealed = Buffer.from(row.password_ciphertext.slice('v2.'.length), 'base64');
    expect(sealed.length).toBe(12 + 16 + Buffer.byteLength(PASSWORDS[0]));
    expect(sealed.includes(Buffer.from(PASSWORDS[0]))).toBe(false);

    // no ENCRYPTION_KEY in this test app: the key was generated into DATA_DIR/keys, owner-only
    const keyFile = join(app.dataDir, 'keys', 'encryption.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const key = parseEncryptionKey(readFileSync(keyFile, 'utf8').trim());
    expect(row.credentials_key_id).toBe(encryptionKeyId(key));
    expect(app.app.get(CredentialEncryptionService).decrypt({ ciphertext: row.password_ciphertext, keyId: row.credentials_key_id }, created.id)).toBe(
      PASSWORDS[0],
    );

    // the database refuses half credentials
    await expect(db.query('UPDATE upstreams SET password_ciphertext = NULL, credentials_key_id = NULL WHERE id = $1', [created.id])).rejects.toThrow(
      /upstreams_credentials_both_or_neither/,
    );
  });

  it('re-seals credentials sealed with a key listed in ENCRYPTION_PREVIOUS_KEYS, or before rows were bound, with ENCRYPTION_KEY for their row', async () => {
    const newKey = 'b'.repeat(64);
    const rotated = await startTestApp({ ENCRYPTION_KEY: newKey, ENCRYPTION_PREVIOUS_KEYS: OLD_KEY }, { database });
    try {
      const api = new AdminApi(rotated.url);
      const group = await api.createGroup('rotation');
      const registry = (await api.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'r' })).body;
      const created = (
        await api.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, {
          name: 'one',
          url: 'http://127.0.0.1:12',
          username: 'robot',
          password: PASSWORDS[1],
        })
      ).body;
      const rotatedDb = rotated.app.get(DataSource);
      const keyIdOf = async () => (await rotatedDb.query('SELECT credentials_key_id FROM upstreams WHERE id = $1', [created.id]))[0].credentials_key_id;
      expect(await keyIdOf()).toBe(encryptionKeyId(parseEncryptionKey(newKey)));

      // a row sealed before the rotation, with the old key, before ciphertexts were bound to their row
      const old = sealedBeforeRowBinding(OLD_KEY, PASSWORDS[1]);
      await rotatedDb.query('UPDATE upstreams SET password_ciphertext = $2, credentials_key_id = $3 WHERE id = $1', [created.id, old.ciphertext, old.keyId]);

      // still readable, and re-sealed with the current key at the next boot
      const upstreams = rotated.app.get(UpstreamsService);
      expect((await upstreams.pullUpstreamOf(created.id))?.descriptor.password).toBe(PASSWORDS[1]);
      await upstreams.onApplicationBootstrap();
      expect(await keyIdOf()).toBe(encryptionKeyId(parseEncryptionKey(newKey)));
      const resealed = await upstreams.findAccessible(null, created.id, GroupPermission.READ, { skipPermissionCheck: true });
      expect(resealed.passwordCiphertext).toMatch(/^v2\./);
      expect((await upstreams.pullUpstreamOf(created.id))?.descriptor.password).toBe(PASSWORDS[1]);
    } finally {
      await rotated.close();
    }
  });
});
