/**
 * The Docker token service end to end: `GET /v2/` challenge, `GET /jwt/auth` with HTTP Basic,
 * the OAuth2 `POST /jwt/auth` form (password and refresh_token grants), scope granting, and
 * verification of registry tokens (registry/repository binding, tampering, expiry, revocation at once).
 * Runs on the embedded database, and on Postgres when DATABASE_URL is set.
 */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { jest } from '@jest/globals';
import { SignJWT } from 'jose';
import { DataSource } from 'typeorm';
import type { Actor } from '../src/accounts/actor.js';
import { GroupAccessPolicy } from '../src/accounts/group-access.policy.js';
import { GroupPermission } from '../src/accounts/actor.js';
import { RegistryAuthError, RegistryTokenService } from '../src/auth/registry-token.service.js';
import { SigningKeyService, TOKEN_ISSUER } from '../src/auth/signing-key.service.js';
import { AdminApi } from './support/admin-api.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';

const basic = (username: string, password: string) => `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
const scopeFor = (registryId: number, name = 'library/alpine') => `repository:virtual_registries/containers/${registryId}/${name}:pull`;
const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as Record<string, any>;

async function tokenRequest(app: TestApp, authorization: string | undefined, params: [string, string][] = []) {
  const query = new URLSearchParams([['service', 'virtual_registry'], ...params]);
  const res = await fetch(`${app.url}/jwt/auth?${query}`, { headers: authorization ? { authorization } : {} });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function tokenForm(app: TestApp, form: Record<string, string>) {
  const res = await fetch(`${app.url}/jwt/auth`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function versionCheck(app: TestApp, authorization?: string) {
  const res = await fetch(`${app.url}/v2/`, { headers: authorization ? { authorization } : {} });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

describe.each(databaseTargets())('registry token service (%s database)', (database) => {
  let app: TestApp;
  let admin: AdminApi;
  let tokens: RegistryTokenService;
  let policy: GroupAccessPolicy;
  let db: DataSource;
  let groupA: number;
  let groupB: number;
  let registryA1: number;
  let registryA2: number;
  let registryB: number;
  let alice: { username: string; token: string };

  const createRegistry = async (groupId: number, name: string) =>
    (await admin.expect(201, 'POST', `/api/v4/groups/${groupId}/-/virtual_registries/container/registries`, { name })).body.id as number;

  const userToken = async (username: string, groupId: number | undefined, role: 'guest' | 'reporter' | 'maintainer', scopes: string[]) => ({
    username,
    token: await admin.createUserToken(username, groupId ? { groupId, role } : undefined, scopes),
  });

  const expectUnauthorized = async (promise: Promise<unknown>) => {
    await expect(promise).rejects.toBeInstanceOf(RegistryAuthError);
    await expect(promise).rejects.toMatchObject({ kind: 'unauthorized' });
  };

  beforeAll(async () => {
    app = await startTestApp({ LOGIN_FAILURES_PER_MINUTE: '1000' }, { database });
    admin = new AdminApi(app.url);
    tokens = app.app.get(RegistryTokenService);
    policy = app.app.get(GroupAccessPolicy);
    db = app.app.get(DataSource);
    groupA = (await admin.createGroup('auth-a')).id;
    groupB = (await admin.createGroup('auth-b')).id;
    registryA1 = await createRegistry(groupA, 'a1');
    registryA2 = await createRegistry(groupA, 'a2');
    registryB = await createRegistry(groupB, 'b');
    alice = await userToken('alice', groupA, 'guest', ['read_virtual_registry']);
  });
  afterAll(async () => app?.close());

  describe('GET /v2/', () => {
    it('challenges without credentials, with the realm and service clients need', async () => {
      const res = await versionCheck(app);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="${app.url}/jwt/auth",service="virtual_registry"`);
      expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      expect(res.body).toEqual({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] });
      const noSlash = await fetch(`${app.url}/v2`);
      expect(noSlash.status).toBe(401);
    });

    it('answers 200 {} to a valid registry token, even one granting nothing', async () => {
      const login = await tokenRequest(app, basic(alice.username, alice.token), [
        ['account', 'alice'],
        ['client_id', 'docker'],
      ]);
      expect(login.status).toBe(200);
      const res = await versionCheck(app, `Bearer ${login.body.token}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({});
      expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    });

    it('refuses a personal access token as a registry token, and Basic credentials', async () => {
      expect((await versionCheck(app, `Bearer ${alice.token}`)).status).toBe(401);
      const basicRes = await versionCheck(app, basic(alice.username, alice.token));
      expect(basicRes.status).toBe(401);
      expect(basicRes.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
    });
  });

  describe('GET /jwt/auth', () => {
    it('answers a login without scope with a token that grants nothing (docker login)', async () => {
      const res = await tokenRequest(app, basic('alice', alice.token), [
        ['offline_token', 'true'],
        ['client_id', 'docker'],
      ]);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.body).toEqual({
        token: expect.any(String),
        access_token: res.body.token,
        expires_in: 900,
        issued_at: expect.any(String),
        refresh_token: expect.any(String),
      });
      expect(Date.parse(res.body.issued_at)).toBeGreaterThan(Date.now() - 60_000);
      const jwt = claims(res.body.token);
      expect(jwt).toMatchObject({ iss: TOKEN_ISSUER, aud: 'virtual_registry', sub: 'alice', access: [] });
      expect(jwt.exp - jwt.iat).toBe(900);
      const header = JSON.parse(Buffer.from(res.body.token.split('.')[0], 'base64url').toString());
      expect(header).toEqual({ alg: 'ES256', kid: app.app.get(SigningKeyService).currentKey.kid, typ: 'JWT' });
      expect(JSON.stringify(jwt)).not.toContain(alice.token);
      const withoutOffline = await tokenRequest(app, basic('alice', alice.token));
      expect(withoutOffline.body).not.toHaveProperty('refresh_token');
    });

    it('grants each requested scope the actor may have and silently drops the others', async () => {
      const res = await tokenRequest(app, basic('ALICE', alice.token), [
        ['scope', scopeFor(registryA1)],
        ['scope', `${scopeFor(registryA2, 'team/app')} ${scopeFor(registryB)}`],
        ['scope', scopeFor(999999)],
        ['scope', `repository:virtual_registries/container/${registryA1}/library/busybox:pull,push`],
        ['scope', `repository:virtual_registries/containers/${registryA1}/library/nginx:push`],
        ['scope', 'registry:catalog:*'],
        ['scope', 'repository:library/alpine:pull'],
        ['scope', 'total nonsense ::: \u0000'],
      ]);
      expect(res.status).toBe(200);
      expect(claims(res.body.token).access).toEqual([
        { type: 'repository', name: `virtual_registries/containers/${registryA1}/library/alpine`, actions: ['pull'] },
        { type: 'repository', name: `virtual_registries/containers/${registryA2}/team/app`, actions: ['pull'] },
        { type: 'repository', name: `virtual_registries/container/${registryA1}/library/busybox`, actions: ['pull'] },
      ]);
    });

    it('grants nothing to a token without read_virtual_registry, even for an owner', async () => {
      const owner = await userToken('api-only-owner', groupA, 'maintainer', ['api']);
      const res = await tokenRequest(app, basic(owner.username, owner.token), [['scope', scopeFor(registryA1)]]);
      expect(res.status).toBe(200);
      expect(claims(res.body.token).access).toEqual([]);
    });

    it.each([
      ['no credentials', undefined],
      ['a wrong token', basic('alice', 'cvrpat-wrong-wrong-wrong-wrong-wrong-wrong-wrong')],
      ["another user's name", basic('root', 'x'.repeat(10))],
      ['a malformed Basic header', 'Basic !!!'],
      ['an empty password', basic('alice', '')],
    ])('answers 401 to %s', async (_name, authorization) => {
      const res = await tokenRequest(app, authorization, [['scope', scopeFor(registryA1)]]);
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ errors: [{ code: 'UNAUTHORIZED', message: expect.any(String), detail: null }] });
    });

    it('requires the username that owns the token', async () => {
      const bob = await userToken('bob-login', groupA, 'guest', ['read_virtual_registry']);
      expect((await tokenRequest(app, basic('alice', bob.token))).status).toBe(401);
      expect((await tokenRequest(app, basic('bob-login', bob.token))).status).toBe(200);
    });

    it('logs deploy tokens in with their own username; they pull only from their group', async () => {
      const dt = (await admin.expect(201, 'POST', `/api/v4/groups/${groupA}/deploy_tokens`, { name: 'ci', scopes: ['read_virtual_registry'] })).body;
      expect((await tokenRequest(app, basic('alice', dt.token))).status).toBe(401);
      const res = await tokenRequest(app, basic(dt.username, dt.token), [
        ['scope', scopeFor(registryA1)],
        ['scope', scopeFor(registryB)],
      ]);
      expect(res.status).toBe(200);
      expect(claims(res.body.token).access.map((a: { name: string }) => a.name)).toEqual([`virtual_registries/containers/${registryA1}/library/alpine`]);
      const actor = await tokens.verifyPullToken(`Bearer ${res.body.token}`, registryA1, 'library/alpine');
      expect(actor).toMatchObject({ kind: 'deploy_token', deployTokenId: dt.id, groupId: groupA, scopes: ['read_virtual_registry'] });
    });
  });

  describe('POST /jwt/auth (OAuth2 form)', () => {
    it('grants with grant_type=password and returns the granted scope', async () => {
      const res = await tokenForm(app, {
        grant_type: 'password',
        username: 'alice',
        password: alice.token,
        service: 'virtual_registry',
        client_id: 'containerd',
        scope: `${scopeFor(registryA1)} ${scopeFor(registryB)}`,
      });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        token: expect.any(String),
        access_token: res.body.token,
        expires_in: 900,
        issued_at: expect.any(String),
        scope: scopeFor(registryA1),
      });
      await expect(tokens.verifyPullToken(`Bearer ${res.body.access_token}`, registryA1, 'library/alpine')).resolves.toMatchObject({ username: 'alice' });
    });

    it('trades a refresh token for new access tokens, as long as the credential works', async () => {
      const user = await userToken('refresher', groupA, 'guest', ['read_virtual_registry']);
      const login = await tokenForm(app, {
        grant_type: 'password',
        username: user.username,
        password: user.token,
        access_type: 'offline',
        client_id: 'docker',
      });
      expect(login.status).toBe(200);
      const refreshToken = login.body.refresh_token as string;
      expect(refreshToken).toEqual(expect.any(String));
      const refreshed = await tokenForm(app, { grant_type: 'refresh_token', refresh_token: refreshToken, scope: scopeFor(registryA1), client_id: 'docker' });
      expect(refreshed.status).toBe(200);
      expect(refreshed.body.scope).toBe(scopeFor(registryA1));
      expect(refreshed.body).not.toHaveProperty('refresh_token');
      // a refresh token is not a registry token, and a registry token is not a refresh token
      expect((await versionCheck(app, `Bearer ${refreshToken}`)).status).toBe(401);
      expect((await tokenForm(app, { grant_type: 'refresh_token', refresh_token: refreshed.body.token })).status).toBe(401);
      // the GET flow's offline_token gives a refresh token too
      const viaGet = await tokenRequest(app, basic(user.username, user.token), [['offline_token', 'true']]);
      expect((await tokenForm(app, { grant_type: 'refresh_token', refresh_token: viaGet.body.refresh_token })).status).toBe(200);
      // revoking the personal access token ends the refresh token too
      await admin.expect(204, 'DELETE', `/api/v4/personal_access_tokens/${claims(refreshToken).credential.id}`);
      expect((await tokenForm(app, { grant_type: 'refresh_token', refresh_token: refreshToken })).status).toBe(401);
    });

    it.each([
      [{ grant_type: 'password', username: 'alice', password: 'cvrpat-nope-nope-nope-nope-nope' }, 401],
      [{ grant_type: 'password', username: 'alice' }, 401],
      [{ grant_type: 'refresh_token' }, 401],
      [{ grant_type: 'refresh_token', refresh_token: 'not.a.jwt' }, 401],
      [{ grant_type: 'client_credentials' }, 400],
      [{}, 400],
    ])('refuses %j with %i', async (form, status) => {
      const res = await tokenForm(app, form as Record<string, string>);
      expect(res.status).toBe(status);
      expect(res.body.errors[0].code).toBe(status === 400 ? 'UNSUPPORTED' : 'UNAUTHORIZED');
    });
  });

  describe('requests with very many scopes', () => {
    /**
     * 10,000 distinct scopes, cycling over A1, A2 (alice may pull), B (she may not) and a registry that does
     * not exist; the first 64 name the longest repositories there are (255 characters).
     */
    const manyScopes = () =>
      Array.from({ length: 10_000 }, (_, i) => {
        const name = i < 64 ? `team-${i}/${'x'.repeat(255 - `team-${i}/`.length)}` : `team-${i}/app`;
        return scopeFor([registryA1, registryA2, registryB, 999999][i % 4], name);
      });

    /** The SQL statements `fn` sends that read registries or memberships (the access checks). */
    async function accessQueries<T>(fn: () => Promise<T>): Promise<{ result: T; queries: string[] }> {
      const spy = jest.spyOn(db.logger, 'logQuery');
      try {
        const result = await fn();
        const queries = spy.mock.calls.map(([sql]) => sql).filter((sql) => /\b(FROM|JOIN)\s+"?(registries|members)"?/i.test(sql));
        return { result, queries };
      } finally {
        spy.mockRestore();
      }
    }

    it('grants at most 64 of them, with one access query per distinct registry, in a bounded token (OAuth2 form)', async () => {
      const { result: res, queries } = await accessQueries(() =>
        tokenForm(app, { grant_type: 'password', username: 'alice', password: alice.token, scope: manyScopes().join(' ') }),
      );
      expect(res.status).toBe(200);
      const access = claims(res.body.token).access as { name: string }[];
      // the first 64 scopes are considered: 16 per registry, of which A1's and A2's are granted
      expect(access).toHaveLength(32);
      expect(new Set(access.map((a) => a.name.split('/')[2]))).toEqual(new Set([String(registryA1), String(registryA2)]));
      expect(res.body.scope.split(' ')).toHaveLength(32);
      // one query reads the registries named, one reads alice's membership per group (A and B)
      expect(queries).toHaveLength(3);
      // at most 64 names of at most 255 characters: tens of kilobytes, never megabytes
      expect(res.body.token.length).toBeLessThan(32 * 1024);
    });

    it('caps the repeated scope parameters of GET /jwt/auth the same way', async () => {
      const scopes = manyScopes()
        .slice(0, 60)
        .map((s) => s.replace(/x+:pull$/, 'x:pull'));
      const extra = Array.from({ length: 100 }, (_, i) => scopeFor(registryA1, `extra/${i}`));
      const { result: res, queries } = await accessQueries(() =>
        tokenRequest(
          app,
          basic('alice', alice.token),
          [...scopes, ...extra].map((s) => ['scope', s] as [string, string]),
        ),
      );
      expect(res.status).toBe(200);
      const names = (claims(res.body.token).access as { name: string }[]).map((a) => a.name);
      // 60 cycled scopes (30 grantable) + the first 4 extra ones make 64
      expect(names).toHaveLength(34);
      expect(names.slice(-4)).toEqual([0, 1, 2, 3].map((i) => `virtual_registries/containers/${registryA1}/extra/${i}`));
      expect(queries.length).toBeGreaterThan(0);
      expect(queries.length).toBeLessThanOrEqual(4);
    });
  });

  describe('verifying registry tokens (the pull routes)', () => {
    let jwt: string;
    beforeAll(async () => {
      jwt = (await tokenRequest(app, basic('alice', alice.token), [['scope', scopeFor(registryA1)]])).body.token;
    });

    it('accepts the token for exactly its registry and repository', async () => {
      const actor = await tokens.verifyPullToken(`Bearer ${jwt}`, registryA1, 'library/alpine');
      expect(actor).toMatchObject({ kind: 'user', username: 'alice', admin: false, scopes: ['read_virtual_registry'] });
      expect(await policy.can(actor, groupA, GroupPermission.PULL)).toBe(true);
    });

    it('refuses a token for registry 1 on registry 2 and on another repository (denied)', async () => {
      for (const [registryId, name] of [
        [registryA2, 'library/alpine'],
        [registryB, 'library/alpine'],
        [registryA1, 'library/busybox'],
        [registryA1, 'library'],
        [registryA1, 'library/alpine/extra'],
      ] as const) {
        const attempt = tokens.verifyPullToken(`Bearer ${jwt}`, registryId, name);
        await expect(attempt).rejects.toMatchObject({ kind: 'denied' });
      }
    });

    it('treats missing, malformed, tampered, foreign-key, alg=none and expired tokens as unauthorized (401 + challenge)', async () => {
      const [header, payload, signature] = jwt.split('.');
      const forged = Buffer.from(
        JSON.stringify({
          ...claims(jwt),
          access: [{ type: 'repository', name: `virtual_registries/containers/${registryB}/library/alpine`, actions: ['pull'] }],
        }),
      ).toString('base64url');
      const flipped = signature.slice(0, -4) + (signature.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA');
      const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      const otherKey = createPrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const kid = JSON.parse(Buffer.from(header, 'base64url').toString()).kid;
      const foreign = await new SignJWT(claims(jwt)).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' }).sign(otherKey);
      const signer = app.app.get(SigningKeyService);
      const expired = await signer.sign(
        { credential: claims(jwt).credential, access: claims(jwt).access },
        { audience: 'virtual_registry', subject: 'alice', issuedAt: new Date(Date.now() - 3_600_000), expiresAt: new Date(Date.now() - 60_000) },
      );
      const wrongAudience = await signer.sign(
        { credential: claims(jwt).credential, access: claims(jwt).access },
        { audience: 'something-else', subject: 'alice', expiresAt: new Date(Date.now() + 60_000) },
      );
      const cases: Record<string, string | undefined> = {
        missing: undefined,
        'not bearer': `Token ${jwt}`,
        garbage: 'Bearer garbage',
        tampered: `Bearer ${header}.${forged}.${signature}`,
        'tampered signature': `Bearer ${header}.${payload}.${flipped}`,
        'alg none': `Bearer ${noneHeader}.${payload}.`,
        'foreign key': `Bearer ${foreign}`,
        expired: `Bearer ${expired}`,
        'wrong audience': `Bearer ${wrongAudience}`,
      };
      for (const [name, authorization] of Object.entries(cases)) {
        await expectUnauthorized(tokens.verifyPullToken(authorization, registryA1, 'library/alpine'));
        await expectUnauthorized(tokens.verifyPullToken(authorization, registryB, 'library/alpine'));
        const res = await versionCheck(app, authorization);
        expect({ name, status: res.status }).toEqual({ name, status: 401 });
        expect(res.headers.get('www-authenticate')).toMatch(new RegExp(`^Bearer realm="${app.url}/jwt/auth",service="virtual_registry"`));
        if (authorization?.startsWith('Bearer ')) expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
      }
    });

    it('stops a token at once when its personal access token is revoked or expires, or its user is blocked', async () => {
      const mint = async (user: { username: string; token: string }) =>
        (await tokenRequest(app, basic(user.username, user.token), [['scope', scopeFor(registryA1)]])).body.token as string;
      const revokeMe = await userToken('revoke-me', groupA, 'guest', ['read_virtual_registry']);
      const minted = await mint(revokeMe);
      await tokens.verifyPullToken(`Bearer ${minted}`, registryA1, 'library/alpine');
      await admin.expect(204, 'DELETE', `/api/v4/personal_access_tokens/${claims(minted).credential.id}`);
      await expectUnauthorized(tokens.verifyPullToken(`Bearer ${minted}`, registryA1, 'library/alpine'));
      expect((await versionCheck(app, `Bearer ${minted}`)).status).toBe(401);

      const expireMe = await userToken('expire-me', groupA, 'guest', ['read_virtual_registry']);
      const minted2 = await mint(expireMe);
      await db.query(`UPDATE personal_access_tokens SET expires_at = current_date - 1 WHERE id = $1`, [claims(minted2).credential.id]);
      await expectUnauthorized(tokens.verifyPullToken(`Bearer ${minted2}`, registryA1, 'library/alpine'));

      const blockMe = await userToken('block-me', groupA, 'guest', ['read_virtual_registry']);
      const minted3 = await mint(blockMe);
      const userId = (await admin.get('/api/v4/users?username=block-me')).body[0].id;
      await admin.expect(201, 'POST', `/api/v4/users/${userId}/block`);
      await expectUnauthorized(tokens.verifyPullToken(`Bearer ${minted3}`, registryA1, 'library/alpine'));
      await admin.expect(201, 'POST', `/api/v4/users/${userId}/unblock`);
      await expect(tokens.verifyPullToken(`Bearer ${minted3}`, registryA1, 'library/alpine')).resolves.toMatchObject({ username: 'block-me' });

      const dt = (await admin.expect(201, 'POST', `/api/v4/groups/${groupA}/deploy_tokens`, { name: 'revoked-later', scopes: ['read_virtual_registry'] })).body;
      const minted4 = await mint({ username: dt.username, token: dt.token });
      await tokens.verifyPullToken(`Bearer ${minted4}`, registryA1, 'library/alpine');
      await admin.expect(204, 'DELETE', `/api/v4/groups/${groupA}/deploy_tokens/${dt.id}`);
      await expectUnauthorized(tokens.verifyPullToken(`Bearer ${minted4}`, registryA1, 'library/alpine'));
    });

    it('leaves membership to the group check: a member removed after minting keeps a valid token but loses PULL', async () => {
      const leaver = await userToken('leaver', groupA, 'guest', ['read_virtual_registry']);
      const minted = (await tokenRequest(app, basic(leaver.username, leaver.token), [['scope', scopeFor(registryA1)]])).body.token;
      const userId = (await admin.get('/api/v4/users?username=leaver')).body[0].id;
      await admin.expect(204, 'DELETE', `/api/v4/groups/${groupA}/members/${userId}`);
      const actor: Actor = await tokens.verifyPullToken(`Bearer ${minted}`, registryA1, 'library/alpine');
      expect(await policy.can(actor, groupA, GroupPermission.PULL)).toBe(false);
      await expect(policy.assert(actor, groupA, GroupPermission.PULL)).rejects.toMatchObject({ status: 404 });
    });
  });
});
