/**
 * Accounts admin API end to end (GitLab paths and fields): bootstrap admin, users, groups, members,
 * personal access tokens (create, list, revoke, self-rotate), deploy tokens, pagination, validation,
 * and the rule that secrets are shown once and stored only as SHA-256 digests.
 * Runs on the embedded database, and on Postgres when DATABASE_URL is set.
 */
import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AdminApi } from './support/admin-api.js';
import { databaseTargets, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe.each(databaseTargets())('accounts admin API (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let db: DataSource;

  beforeAll(async () => {
    app = await startTestApp({}, { database });
    admin = new AdminApi(app.url);
    db = app.app.get(DataSource);
  });
  afterAll(async () => app?.close());

  describe('authentication', () => {
    it('bootstraps root as an instance admin with INITIAL_ADMIN_TOKEN, stored as a digest only', async () => {
      const me = await admin.expect(200, 'GET', '/api/v4/user');
      expect(me.body).toMatchObject({ username: 'root', is_admin: true, state: 'active' });
      const rows = await db.query(`SELECT * FROM personal_access_tokens WHERE user_id = $1`, [me.body.id]);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ name: 'initial admin token', scopes: ['api', 'read_virtual_registry'], token_digest: sha256(TEST_ADMIN_TOKEN) });
      expect(JSON.stringify(rows)).not.toContain(TEST_ADMIN_TOKEN);
    });

    it('accepts PRIVATE-TOKEN and Authorization: Bearer', async () => {
      const res = await fetch(`${app.url}/api/v4/user`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
      expect(res.status).toBe(200);
    });

    it.each([
      ['no token', {}],
      ['an unknown token', { 'private-token': 'cvrpat-not-a-real-token-at-all-000000' }],
      ['a short token', { 'private-token': 'x' }],
      ['a Basic header', { authorization: `Basic ${Buffer.from(`root:${TEST_ADMIN_TOKEN}`).toString('base64')}` }],
    ])('answers 401 GitLab-style to %s', async (_name, headers) => {
      const res = await fetch(`${app.url}/api/v4/user`, { headers: headers as Record<string, string> });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ message: '401 Unauthorized' });
    });

    it('refuses a token without the api scope with 403 insufficient_scope', async () => {
      const token = await admin.createUserToken('pullonly', undefined, ['read_virtual_registry']);
      const res = await admin.as(token).get('/api/v4/user');
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ error: 'insufficient_scope', scope: 'api' });
    });
  });

  describe('users', () => {
    it('creates users (admin only), refuses duplicates regardless of case, validates fields', async () => {
      const created = await admin.expect(201, 'POST', '/api/v4/users', { username: 'Alice', email: 'alice@example.test' });
      expect(created.body).toEqual({
        id: expect.any(Number),
        username: 'Alice',
        email: 'alice@example.test',
        state: 'active',
        is_admin: false,
        created_at: expect.any(String),
      });
      expect((await admin.post('/api/v4/users', { username: 'alice' })).status).toBe(409);
      const invalid = await admin.post('/api/v4/users', { username: 'bad name!', email: 'nope', admin: 'maybe', extra: 1 });
      expect(invalid.status).toBe(400);
      expect(Object.keys(invalid.body.message).sort()).toEqual(['admin', 'email', 'username']);
      expect(invalid.body.message.username[0]).toMatch(/letters, digits/);

      const userToken = await admin.createUserToken('bob');
      const bob = admin.as(userToken);
      expect((await bob.post('/api/v4/users', { username: 'mallory' })).status).toBe(403);
      expect((await bob.get('/api/v4/users')).status).toBe(403);
      expect((await bob.get(`/api/v4/users/${created.body.id}`)).status).toBe(404);
      const me = await bob.expect(200, 'GET', '/api/v4/user');
      expect((await bob.get(`/api/v4/users/${me.body.id}`)).body.username).toBe('bob');
    });

    it('lists users with GitLab pagination headers', async () => {
      for (const name of ['page-a', 'page-b', 'page-c']) await admin.expect(201, 'POST', '/api/v4/users', { username: name });
      const total = (await admin.get('/api/v4/users?per_page=100')).body.length;
      const first = await admin.expect(200, 'GET', '/api/v4/users?per_page=2');
      expect(first.body).toHaveLength(2);
      expect(first.headers.get('x-total')).toBe(String(total));
      expect(first.headers.get('x-page')).toBe('1');
      expect(first.headers.get('x-per-page')).toBe('2');
      expect(first.headers.get('x-next-page')).toBe('2');
      expect(first.headers.get('x-prev-page')).toBe('');
      expect(first.headers.get('link')).toContain('rel="next"');
      expect(first.headers.get('link')).toMatch(/<[^>]*\/api\/v4\/users\?per_page=2&page=2>; rel="next"/);
      const last = await admin.expect(200, 'GET', `/api/v4/users?per_page=2&page=${Math.ceil(total / 2)}`);
      expect(last.headers.get('x-next-page')).toBe('');
      expect((await admin.get('/api/v4/users?username=PAGE-B')).body.map((u: { username: string }) => u.username)).toEqual(['page-b']);
      expect((await admin.get('/api/v4/users?per_page=101')).status).toBe(400);
      expect((await admin.get('/api/v4/users?page=0')).status).toBe(400);
    });

    it('blocking a user stops its tokens at once; unblocking restores them', async () => {
      const token = await admin.createUserToken('carol');
      const carol = admin.as(token);
      const id = (await carol.expect(200, 'GET', '/api/v4/user')).body.id;
      expect((await admin.expect(201, 'POST', `/api/v4/users/${id}/block`)).body.state).toBe('blocked');
      expect((await carol.get('/api/v4/user')).status).toBe(401);
      await admin.expect(201, 'POST', `/api/v4/users/${id}/unblock`);
      expect((await carol.get('/api/v4/user')).status).toBe(200);
      const rootId = (await admin.get('/api/v4/user')).body.id;
      expect((await admin.post(`/api/v4/users/${rootId}/block`)).status).toBe(403);
    });

    it('deletes a user with its tokens', async () => {
      const token = await admin.createUserToken('dave');
      const id = (await admin.as(token).get('/api/v4/user')).body.id;
      await admin.expect(204, 'DELETE', `/api/v4/users/${id}`);
      expect((await admin.as(token).get('/api/v4/user')).status).toBe(401);
      expect((await admin.get(`/api/v4/users/${id}`)).status).toBe(404);
      expect(await db.query(`SELECT id FROM personal_access_tokens WHERE user_id = $1`, [id])).toEqual([]);
    });

    it('treats impossible ids as absent (404), never as a server error', async () => {
      for (const id of ['0', 'abc', '99999999999', '2147483648', '-1', '1.5']) {
        expect((await admin.get(`/api/v4/users/${id}`)).status).toBe(404);
      }
    });
  });

  describe('groups and members', () => {
    it('creates a group whose creator becomes owner; paths are unique regardless of case', async () => {
      const group = await admin.expect(201, 'POST', '/api/v4/groups', { name: 'Team One', path: 'team-one' });
      expect(group.body).toEqual({
        id: expect.any(Number),
        name: 'Team One',
        path: 'team-one',
        full_name: 'Team One',
        full_path: 'team-one',
        created_at: expect.any(String),
        updated_at: expect.any(String),
      });
      const taken = await admin.post('/api/v4/groups', { name: 'x', path: 'TEAM-ONE' });
      expect(taken.status).toBe(400);
      expect(taken.body.message).toEqual({ path: ['has already been taken'] });
      const invalid = await admin.post('/api/v4/groups', { name: '', path: '-bad' });
      expect(invalid.status).toBe(400);
      expect(Object.keys(invalid.body.message).sort()).toEqual(['name', 'path']);
      const members = await admin.expect(200, 'GET', `/api/v4/groups/${group.body.id}/members`);
      expect(members.body).toEqual([{ id: expect.any(Number), username: 'root', state: 'active', access_level: 50, created_at: expect.any(String) }]);
    });

    it('enforces roles: reporter reads, owner manages members, strangers see nothing', async () => {
      const group = await admin.createGroup('team-roles');
      const other = await admin.createGroup('team-other');
      const reporter = admin.as(await admin.createUserToken('rita', { groupId: group.id, role: 'reporter' }));
      const guest = admin.as(await admin.createUserToken('gus', { groupId: group.id, role: 'guest' }));
      const owner = admin.as(await admin.createUserToken('olga', { groupId: group.id, role: 'owner' }));
      const maintainer = admin.as(await admin.createUserToken('max', { groupId: group.id, role: 'maintainer' }));
      const newcomer = (await admin.expect(201, 'POST', '/api/v4/users', { username: 'newcomer' })).body;

      expect((await reporter.get(`/api/v4/groups/${group.id}`)).status).toBe(200);
      expect((await reporter.get(`/api/v4/groups/${group.id}/members`)).body).toHaveLength(5);
      expect((await guest.get(`/api/v4/groups/${group.id}`)).status).toBe(403);
      expect((await reporter.get(`/api/v4/groups/${other.id}`)).status).toBe(404);
      expect((await reporter.get(`/api/v4/groups/999999`)).status).toBe(404);
      expect((await reporter.get(`/api/v4/groups/${other.id}`)).body).toEqual({ message: '404 Group Not Found' });

      const listed = await reporter.expect(200, 'GET', '/api/v4/groups');
      expect(listed.body.map((g: { path: string }) => g.path)).toEqual(['team-roles']);

      const add = { user_id: newcomer.id, access_level: 30 };
      expect((await maintainer.post(`/api/v4/groups/${group.id}/members`, add)).status).toBe(403);
      expect((await reporter.post(`/api/v4/groups/${other.id}/members`, add)).status).toBe(404);
      const added = await owner.expect(201, 'POST', `/api/v4/groups/${group.id}/members`, add);
      expect(added.body).toMatchObject({ id: newcomer.id, username: 'newcomer', access_level: 30 });
      expect((await owner.post(`/api/v4/groups/${group.id}/members`, add)).status).toBe(409);
      expect((await owner.post(`/api/v4/groups/${group.id}/members`, { user_id: 999999, access_level: 30 })).status).toBe(404);
      expect((await owner.post(`/api/v4/groups/${group.id}/members`, { user_id: newcomer.id, access_level: 35 })).status).toBe(400);

      const updated = await owner.request('PUT', `/api/v4/groups/${group.id}/members/${newcomer.id}`, { access_level: 40 });
      expect(updated.status).toBe(200);
      expect(updated.body.access_level).toBe(40);
      await owner.expect(204, 'DELETE', `/api/v4/groups/${group.id}/members/${newcomer.id}`);
      expect((await owner.delete(`/api/v4/groups/${group.id}/members/${newcomer.id}`)).status).toBe(404);
    });

    it('keeps at least one owner', async () => {
      const group = await admin.createGroup('team-owners');
      const rootId = (await admin.get('/api/v4/user')).body.id;
      const demote = await admin.request('PUT', `/api/v4/groups/${group.id}/members/${rootId}`, { access_level: 40 });
      expect(demote.status).toBe(400);
      expect((await admin.delete(`/api/v4/groups/${group.id}/members/${rootId}`)).status).toBe(400);
      const second = (await admin.expect(201, 'POST', '/api/v4/users', { username: 'second-owner' })).body;
      await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/members`, { user_id: second.id, access_level: 50 });
      await admin.expect(204, 'DELETE', `/api/v4/groups/${group.id}/members/${rootId}`);
      // root is no longer a member, but an instance admin still manages the group
      expect((await admin.get(`/api/v4/groups/${group.id}`)).status).toBe(200);
    });

    it('deletes a group (owner only) with its members and deploy tokens', async () => {
      const group = await admin.createGroup('team-gone');
      const maintainer = admin.as(await admin.createUserToken('mia', { groupId: group.id, role: 'maintainer' }));
      const dt = await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/deploy_tokens`, { name: 'ci', scopes: ['read_virtual_registry'] });
      expect((await maintainer.delete(`/api/v4/groups/${group.id}`)).status).toBe(403);
      await admin.expect(204, 'DELETE', `/api/v4/groups/${group.id}`);
      expect((await admin.get(`/api/v4/groups/${group.id}`)).status).toBe(404);
      expect((await admin.delete(`/api/v4/groups/${group.id}`)).status).toBe(404);
      expect(await db.query(`SELECT id FROM deploy_tokens WHERE id = $1`, [dt.body.id])).toEqual([]);
      expect(await db.query(`SELECT id FROM members WHERE group_id = $1`, [group.id])).toEqual([]);
    });
  });

  describe('personal access tokens', () => {
    it('creates tokens for a user (admin) and for oneself, shows the secret once, lists without it', async () => {
      const user = (await admin.expect(201, 'POST', '/api/v4/users', { username: 'erin' })).body;
      const created = await admin.expect(201, 'POST', `/api/v4/users/${user.id}/personal_access_tokens`, {
        name: 'erin api',
        scopes: ['api', 'read_virtual_registry'],
        expires_at: '2099-01-31',
      });
      expect(created.body).toEqual({
        id: expect.any(Number),
        name: 'erin api',
        revoked: false,
        created_at: expect.any(String),
        scopes: ['api', 'read_virtual_registry'],
        user_id: user.id,
        last_used_at: null,
        active: true,
        expires_at: '2099-01-31',
        token: expect.stringMatching(/^cvrpat-[A-Za-z0-9_-]{43}$/),
      });
      const secret = created.body.token as string;
      const erin = admin.as(secret);
      const own = await erin.expect(201, 'POST', '/api/v4/user/personal_access_tokens', { name: 'second', scopes: ['read_virtual_registry'] });
      const list = await erin.expect(200, 'GET', '/api/v4/user/personal_access_tokens');
      expect(list.body.map((t: { name: string }) => t.name)).toEqual(['erin api', 'second']);
      expect(list.body[0].last_used_at).not.toBeNull();
      expect(list.text).not.toContain(secret);
      expect(list.text).not.toContain(own.body.token);
      expect(list.text).not.toMatch(/cvrpat-|token_digest|tokenDigest/);

      expect((await erin.post(`/api/v4/users/${user.id}/personal_access_tokens`, { name: 'x', scopes: ['api'] })).status).toBe(403);
      expect((await admin.post(`/api/v4/users/999999/personal_access_tokens`, { name: 'x', scopes: ['api'] })).status).toBe(404);
      const bad = await admin.post(`/api/v4/users/${user.id}/personal_access_tokens`, { name: 'x', scopes: ['write_registry'], expires_at: '2020-01-01' });
      expect(bad.status).toBe(400);
      expect(bad.body.message.scopes[0]).toMatch(/api, read_virtual_registry/);
      const past = await admin.post(`/api/v4/users/${user.id}/personal_access_tokens`, { name: 'x', scopes: ['api'], expires_at: '2020-01-01' });
      expect(past.status).toBe(400);
      expect(past.body.message).toEqual({ expires_at: ['must be a date in the future'] });
      expect((await admin.post(`/api/v4/users/${user.id}/personal_access_tokens`, { name: 'x', scopes: [] })).status).toBe(400);

      const rows = await db.query(`SELECT * FROM personal_access_tokens WHERE user_id = $1`, [user.id]);
      expect(rows.map((r: { token_digest: string }) => r.token_digest).sort()).toEqual([sha256(secret), sha256(own.body.token)].sort());
      expect(JSON.stringify(rows)).not.toContain(secret);
      expect(JSON.stringify(rows)).not.toContain(own.body.token);
    });

    it("revokes: own token or (admin) anyone's; others' tokens look absent", async () => {
      const fran = admin.as(await admin.createUserToken('fran'));
      const gail = admin.as(await admin.createUserToken('gail'));
      const extra = await fran.expect(201, 'POST', '/api/v4/user/personal_access_tokens', { name: 'extra', scopes: ['api'] });
      expect((await gail.delete(`/api/v4/personal_access_tokens/${extra.body.id}`)).status).toBe(404);
      await fran.expect(204, 'DELETE', `/api/v4/personal_access_tokens/${extra.body.id}`);
      expect((await admin.as(extra.body.token).get('/api/v4/user')).status).toBe(401);
      const listed = await fran.expect(200, 'GET', '/api/v4/user/personal_access_tokens');
      expect(listed.body.find((t: { id: number }) => t.id === extra.body.id)).toMatchObject({ revoked: true, active: false });
      const gailTokens = (await gail.get('/api/v4/user/personal_access_tokens')).body;
      await admin.expect(204, 'DELETE', `/api/v4/personal_access_tokens/${gailTokens[0].id}`);
      expect((await gail.get('/api/v4/user')).status).toBe(401);
    });

    it('self-rotates: a new secret with the same name and scopes; the old one stops working', async () => {
      const oldSecret = await admin.createUserToken('hank', undefined, ['api', 'read_virtual_registry']);
      const rotated = await admin.as(oldSecret).expect(200, 'POST', '/api/v4/personal_access_tokens/self/rotate');
      expect(rotated.body).toMatchObject({ name: 'hank-token', scopes: ['api', 'read_virtual_registry'], active: true, revoked: false });
      expect(rotated.body.token).not.toBe(oldSecret);
      expect((await admin.as(oldSecret).get('/api/v4/user')).status).toBe(401);
      expect((await admin.as(oldSecret).post('/api/v4/personal_access_tokens/self/rotate')).status).toBe(401);
      const newer = await admin.as(rotated.body.token).expect(200, 'POST', '/api/v4/personal_access_tokens/self/rotate', { expires_at: '2098-06-01' });
      expect(newer.body.expires_at).toBe('2098-06-01');
      expect((await admin.as(newer.body.token).get('/api/v4/user')).body.username).toBe('hank');
    });

    it('an expired token stops working on its expiry date', async () => {
      const secret = await admin.createUserToken('ivan');
      await db.query(`UPDATE personal_access_tokens SET expires_at = current_date WHERE token_digest = $1`, [sha256(secret)]);
      expect((await admin.as(secret).get('/api/v4/user')).status).toBe(401);
    });
  });

  describe('deploy tokens', () => {
    it('creates (owner), lists, gets and revokes group deploy tokens; the secret is shown once', async () => {
      const group = await admin.createGroup('team-deploy');
      const created = await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/deploy_tokens`, {
        name: 'cluster',
        scopes: ['read_virtual_registry'],
        expires_at: '2099-01-01T00:00:00Z',
      });
      expect(created.body).toEqual({
        id: expect.any(Number),
        name: 'cluster',
        username: `gitlab+deploy-token-${created.body.id}`,
        expires_at: '2099-01-01T00:00:00.000Z',
        scopes: ['read_virtual_registry'],
        revoked: false,
        expired: false,
        token: expect.stringMatching(/^cvrdt-[A-Za-z0-9_-]{43}$/),
      });
      const named = await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/deploy_tokens`, {
        name: 'named',
        scopes: ['read_virtual_registry'],
        username: 'puller',
      });
      expect(named.body.username).toBe('puller');
      const list = await admin.expect(200, 'GET', `/api/v4/groups/${group.id}/deploy_tokens`);
      expect(list.body.map((t: { name: string }) => t.name)).toEqual(['cluster', 'named']);
      expect(list.headers.get('x-total')).toBe('2');
      expect(list.text).not.toContain(created.body.token);
      expect(list.text).not.toContain(named.body.token);
      expect(list.text).not.toMatch(/cvrdt-|digest/);
      const one = await admin.expect(200, 'GET', `/api/v4/groups/${group.id}/deploy_tokens/${created.body.id}`);
      expect(one.body).not.toHaveProperty('token');

      expect((await admin.post(`/api/v4/groups/${group.id}/deploy_tokens`, { name: 'x', scopes: ['api'] })).status).toBe(400);
      expect(
        (await admin.post(`/api/v4/groups/${group.id}/deploy_tokens`, { name: 'x', scopes: ['read_virtual_registry'], expires_at: '2001-01-01T00:00:00Z' }))
          .status,
      ).toBe(400);

      const maintainer = admin.as(await admin.createUserToken('dt-maint', { groupId: group.id, role: 'maintainer' }));
      expect((await maintainer.get(`/api/v4/groups/${group.id}/deploy_tokens`)).status).toBe(403);
      expect((await maintainer.post(`/api/v4/groups/${group.id}/deploy_tokens`, { name: 'x', scopes: ['read_virtual_registry'] })).status).toBe(403);
      const stranger = admin.as(await admin.createUserToken('dt-stranger'));
      expect((await stranger.get(`/api/v4/groups/${group.id}/deploy_tokens`)).status).toBe(404);

      await admin.expect(204, 'DELETE', `/api/v4/groups/${group.id}/deploy_tokens/${created.body.id}`);
      expect((await admin.get(`/api/v4/groups/${group.id}/deploy_tokens/${created.body.id}`)).body.revoked).toBe(true);
      const other = await admin.createGroup('team-deploy-other');
      expect((await admin.get(`/api/v4/groups/${other.id}/deploy_tokens/${named.body.id}`)).status).toBe(404);

      const rows = await db.query(`SELECT * FROM deploy_tokens WHERE group_id = $1`, [group.id]);
      expect(rows.map((r: { token_digest: string }) => r.token_digest).sort()).toEqual([sha256(created.body.token), sha256(named.body.token)].sort());
      expect(JSON.stringify(rows)).not.toContain(created.body.token);
    });

    it('cannot use the admin API', async () => {
      const group = await admin.createGroup('team-deploy-api');
      const dt = await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/deploy_tokens`, { name: 'ci', scopes: ['read_virtual_registry'] });
      expect((await admin.as(dt.body.token).get(`/api/v4/groups/${group.id}`)).status).toBe(401);
    });
  });

  it('documents every accounts route in OpenAPI with its security', async () => {
    const doc = (await (await fetch(`${app.url}/api/docs-json`)).json()) as {
      paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>;
      components: { securitySchemes: Record<string, unknown> };
    };
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(expect.arrayContaining(['basic', 'bearer', 'private-token']));
    const routes = [
      ['get', '/api/v4/groups'],
      ['post', '/api/v4/groups'],
      ['get', '/api/v4/groups/{id}'],
      ['delete', '/api/v4/groups/{id}'],
      ['get', '/api/v4/users'],
      ['post', '/api/v4/users'],
      ['get', '/api/v4/user'],
      ['post', '/api/v4/groups/{id}/members'],
      ['put', '/api/v4/groups/{id}/members/{user_id}'],
      ['delete', '/api/v4/groups/{id}/members/{user_id}'],
      ['post', '/api/v4/users/{user_id}/personal_access_tokens'],
      ['get', '/api/v4/user/personal_access_tokens'],
      ['post', '/api/v4/user/personal_access_tokens'],
      ['delete', '/api/v4/personal_access_tokens/{id}'],
      ['post', '/api/v4/personal_access_tokens/self/rotate'],
      ['post', '/api/v4/groups/{id}/deploy_tokens'],
    ];
    for (const [method, path] of routes) {
      const security = doc.paths[path]?.[method]?.security;
      expect({ method, path, security }).toEqual({ method, path, security: expect.arrayContaining([{ 'private-token': [] }, { bearer: [] }]) });
    }
    expect(doc.paths['/jwt/auth'].get.security).toEqual([{ basic: [] }]);
    expect(doc.paths['/v2'].get.security).toEqual([{ bearer: [] }]);
  });
});
