/**
 * The authorization matrix (issue acceptance 1): every actor x every action, each cell the exact status.
 * Pulls are real: a manifest GET through the pull route, in front of a real upstream (Debian's
 * docker-registry) holding the image, with the token the actor got from `/jwt/auth` (no token when the
 * token request failed, as a client would). Plus acceptance 2 on the real pull route: a JWT is bound to
 * its registry and repository, tampered/expired tokens get 401 with a fresh challenge, and a token
 * revoked after minting stops at once.
 */
import { DataSource } from 'typeorm';
import { SigningKeyService } from '../src/auth/signing-key.service.js';
import { AdminApi } from './support/admin-api.js';
import { buildDockerImage, pushImage } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { databaseTargets, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';

const canRun = realServices.hasBinary('docker-registry');
const suite = canRun ? describe.each(databaseTargets()) : describe.skip.each(databaseTargets());
const reason = canRun ? '' : ' (skipped: docker-registry is not installed; bash .ci/install-packages.sh)';

type Actor =
  | 'admin PAT'
  | 'maintainer PAT'
  | 'reporter PAT (read_virtual_registry)'
  | 'PAT without read_virtual_registry'
  | 'revoked PAT'
  | 'expired PAT'
  | 'deploy token of the group'
  | 'deploy token of another group'
  | 'anonymous';
type Action =
  | 'token, own group'
  | 'pull, own group'
  | 'token, other group'
  | 'pull, other group'
  | 'admin read, own group'
  | 'admin read, other group'
  | 'admin write, own group';

/**
 * "Own group" is group A (the users are its members; the first deploy token is A's), "other group" is B.
 * Token cells: the status, and for 200 whether the requested pull scope was granted.
 */
const EXPECTED: Record<Actor, Record<Action, string>> = {
  'admin PAT': {
    'token, own group': '200 granted',
    'pull, own group': '200',
    'token, other group': '200 granted',
    'pull, other group': '200',
    'admin read, own group': '200',
    'admin read, other group': '200',
    'admin write, own group': '200',
  },
  'maintainer PAT': {
    'token, own group': '200 granted',
    'pull, own group': '200',
    'token, other group': '200 nothing',
    'pull, other group': '403',
    'admin read, own group': '200',
    'admin read, other group': '404',
    'admin write, own group': '200',
  },
  'reporter PAT (read_virtual_registry)': {
    'token, own group': '200 granted',
    'pull, own group': '200',
    'token, other group': '200 nothing',
    'pull, other group': '403',
    'admin read, own group': '200',
    'admin read, other group': '404',
    'admin write, own group': '403',
  },
  'PAT without read_virtual_registry': {
    'token, own group': '200 nothing',
    'pull, own group': '403',
    'token, other group': '200 nothing',
    'pull, other group': '403',
    'admin read, own group': '200',
    'admin read, other group': '404',
    'admin write, own group': '200',
  },
  'revoked PAT': {
    'token, own group': '401',
    'pull, own group': '401',
    'token, other group': '401',
    'pull, other group': '401',
    'admin read, own group': '401',
    'admin read, other group': '401',
    'admin write, own group': '401',
  },
  'expired PAT': {
    'token, own group': '401',
    'pull, own group': '401',
    'token, other group': '401',
    'pull, other group': '401',
    'admin read, own group': '401',
    'admin read, other group': '401',
    'admin write, own group': '401',
  },
  'deploy token of the group': {
    'token, own group': '200 granted',
    'pull, own group': '200',
    'token, other group': '200 nothing',
    'pull, other group': '403',
    'admin read, own group': '401',
    'admin read, other group': '401',
    'admin write, own group': '401',
  },
  'deploy token of another group': {
    'token, own group': '200 nothing',
    'pull, own group': '403',
    'token, other group': '200 granted',
    'pull, other group': '200',
    'admin read, own group': '401',
    'admin read, other group': '401',
    'admin write, own group': '401',
  },
  anonymous: {
    'token, own group': '401',
    'pull, own group': '401',
    'token, other group': '401',
    'pull, other group': '401',
    'admin read, own group': '401',
    'admin read, other group': '401',
    'admin write, own group': '401',
  },
};

const IMAGE = 'library/alpine';
const scopeFor = (registryId: number, name = IMAGE) => `repository:virtual_registries/containers/${registryId}/${name}:pull`;
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
interface Credentials {
  username: string;
  secret: string;
}

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as Record<string, any>;

suite(`authorization matrix (%s database)${reason}`, (database) => {
  let app: TestApp;
  let upstream: UpstreamRegistry;
  let admin: AdminApi;
  const group = { A: 0, B: 0 };
  const registry = { A: 0, B: 0 };
  const upstreamOf = { A: 0, B: 0 };
  const credentials = {} as Record<Actor, Credentials | undefined>;

  async function tokenRequest(c: Credentials | undefined, registryId: number): Promise<{ status: number; token?: string }> {
    const res = await fetch(`${app.url}/jwt/auth?service=virtual_registry&scope=${encodeURIComponent(scopeFor(registryId))}`, {
      headers: c ? { authorization: basic(c.username, c.secret) } : {},
    });
    const body = (await res.json()) as { token?: string };
    return { status: res.status, token: body.token };
  }

  function pull(registryId: number, token: string | undefined, name = IMAGE): Promise<Response> {
    return fetch(`${app.url}/v2/virtual_registries/containers/${registryId}/${name}/manifests/latest`, {
      headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
  }

  async function perform(actor: Actor, action: Action): Promise<string> {
    const target = action.endsWith('own group') ? registry.A : registry.B;
    if (action.startsWith('token') || action.startsWith('pull')) {
      const { status, token } = await tokenRequest(credentials[actor], target);
      if (action.startsWith('token')) {
        if (status !== 200) return String(status);
        const granted = (claims(token!).access as { name: string }[]).some((a) => a.name === `virtual_registries/containers/${target}/${IMAGE}`);
        return `200 ${granted ? 'granted' : 'nothing'}`;
      }
      const res = await pull(target, status === 200 ? token : undefined);
      await res.arrayBuffer();
      return String(res.status);
    }
    const secret = credentials[actor]?.secret;
    const api = new AdminApi(app.url, secret ?? ''); // anonymous: an empty PRIVATE-TOKEN header
    if (action.startsWith('admin read')) {
      const groupId = action.endsWith('own group') ? group.A : group.B;
      return String((await api.request('GET', `/api/v4/groups/${groupId}/-/virtual_registries/container/registries`)).status);
    }
    return String((await api.request('PATCH', `/api/v4/virtual_registries/container/registries/${registry.A}`, { description: `by ${actor}` })).status);
  }

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    await pushImage(upstream.url, IMAGE, 'latest', await buildDockerImage({ seed: 'auth-matrix' }));
    app = await startTestApp({ LOGIN_FAILURES_PER_MINUTE: '1000' }, { database });
    admin = new AdminApi(app.url);
    for (const key of ['A', 'B'] as const) {
      group[key] = (await admin.createGroup(`matrix-${key.toLowerCase()}`)).id;
      registry[key] = (
        await admin.expect(201, 'POST', `/api/v4/groups/${group[key]}/-/virtual_registries/container/registries`, { name: `registry-${key}` })
      ).body.id;
      upstreamOf[key] = (
        await admin.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry[key]}/upstreams`, {
          name: `upstream-${key}`,
          url: upstream.url,
        })
      ).body.id;
    }
    const both = ['api', 'read_virtual_registry'];
    const member = async (username: string, role: 'maintainer' | 'reporter', scopes: string[]) => ({
      username,
      secret: await admin.createUserToken(username, { groupId: group.A, role }, scopes),
    });
    credentials['admin PAT'] = { username: 'root', secret: TEST_ADMIN_TOKEN };
    credentials['maintainer PAT'] = await member('maintainer', 'maintainer', both);
    credentials['reporter PAT (read_virtual_registry)'] = await member('reporter', 'reporter', both);
    credentials['PAT without read_virtual_registry'] = await member('api-only', 'maintainer', ['api']);
    credentials['revoked PAT'] = await member('revoked', 'maintainer', both);
    credentials['expired PAT'] = await member('expired', 'maintainer', both);
    const revokedId = (await admin.as(credentials['revoked PAT'].secret).get('/api/v4/user/personal_access_tokens')).body[0].id;
    await admin.expect(204, 'DELETE', `/api/v4/personal_access_tokens/${revokedId}`);
    const expiredId = (await admin.as(credentials['expired PAT'].secret).get('/api/v4/user/personal_access_tokens')).body[0].id;
    // the API refuses past expiry dates: expire the token in the database
    await app.app.get(DataSource).query(`UPDATE personal_access_tokens SET expires_at = current_date - 1 WHERE id = $1`, [expiredId]);
    for (const [actor, key] of [
      ['deploy token of the group', 'A'],
      ['deploy token of another group', 'B'],
    ] as const) {
      const dt = (await admin.expect(201, 'POST', `/api/v4/groups/${group[key]}/deploy_tokens`, { name: 'matrix', scopes: ['read_virtual_registry'] })).body;
      credentials[actor] = { username: dt.username, secret: dt.token };
    }
    credentials.anonymous = undefined;
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await upstream?.close();
  });

  it('answers every actor x action with the exact status', async () => {
    const actual = {} as Record<Actor, Record<Action, string>>;
    for (const actor of Object.keys(EXPECTED) as Actor[]) {
      actual[actor] = {} as Record<Action, string>;
      for (const action of Object.keys(EXPECTED[actor]) as Action[]) actual[actor][action] = await perform(actor, action);
    }
    expect(actual).toEqual(EXPECTED);
  });

  describe('registry tokens on the real pull route', () => {
    let token: string;
    let bound: Credentials;
    beforeAll(async () => {
      bound = { username: 'bound', secret: await admin.createUserToken('bound', { groupId: group.A, role: 'reporter' }, ['read_virtual_registry']) };
      token = (await tokenRequest(bound, registry.A)).token!;
    });

    it('a JWT for registry 1 pulls there, and is refused (403 DENIED) on registry 2 and on another repository', async () => {
      expect((await pull(registry.A, token)).status).toBe(200);
      const registry2 = (await admin.expect(201, 'POST', `/api/v4/groups/${group.A}/-/virtual_registries/container/registries`, { name: 'registry-A2' })).body
        .id;
      await admin.expect(201, 'POST', '/api/v4/virtual_registries/container/registry_upstreams', { registry_id: registry2, upstream_id: upstreamOf.A });
      const sameUser = (await tokenRequest(bound, registry2)).token!;
      expect((await pull(registry2, sameUser)).status).toBe(200); // the actor may pull there, with a token for it
      for (const res of [await pull(registry2, token), await pull(registry.A, token, 'library/busybox')]) {
        expect(res.status).toBe(403);
        expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('DENIED');
      }
    });

    it('a tampered or expired JWT gets 401 with a fresh challenge naming the scope', async () => {
      // The genuine token's pull is remembered (MEMORY_CACHE_TTL_MS); the forged one shares its signature.
      expect((await pull(registry.A, token)).status).toBe(200);
      const [header, , signature] = token.split('.');
      const forged = Buffer.from(JSON.stringify({ ...claims(token), exp: claims(token).exp + 3600 })).toString('base64url');
      const expired = await app.app
        .get(SigningKeyService)
        .sign(
          { credential: claims(token).credential, access: claims(token).access },
          { audience: 'virtual_registry', subject: 'bound', issuedAt: new Date(Date.now() - 7_200_000), expiresAt: new Date(Date.now() - 3_600_000) },
        );
      for (const bad of [`${header}.${forged}.${signature}`, expired]) {
        const res = await pull(registry.A, bad);
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe(
          `Bearer realm="${app.url}/jwt/auth",service="virtual_registry",scope="${scopeFor(registry.A)}",error="invalid_token"`,
        );
        expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('UNAUTHORIZED');
      }
    });

    it('a token revoked after minting stops working at once', async () => {
      const secret = await admin.createUserToken('revoked-later', { groupId: group.A, role: 'reporter' }, ['read_virtual_registry']);
      const minted = (await tokenRequest({ username: 'revoked-later', secret }, registry.A)).token!;
      expect((await pull(registry.A, minted)).status).toBe(200);
      await admin.expect(204, 'DELETE', `/api/v4/personal_access_tokens/${claims(minted).credential.id}`);
      expect((await pull(registry.A, minted)).status).toBe(401);
    });
  });
});
