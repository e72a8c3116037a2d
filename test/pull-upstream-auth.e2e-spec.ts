/**
 * Issue 5, acceptance 2 (second half): upstreams that demand credentials. One upstream wants HTTP Basic
 * (htpasswd), one wants a bearer token from a token server (RS256 JWTs, Distribution's `auth.token`);
 * both are pulled through the app with the credentials stored on the upstream, and the token is fetched
 * once per (upstream, scope), not once per request (counted at the token server).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DataSource } from 'typeorm';
import { UpstreamsService } from '../src/upstreams/upstreams.service.js';
import { AdminApi, eventually } from './support/admin-api.js';
import { backdateTagCheck } from './support/cache-observation.js';
import { buildDockerImage, buildImage, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, pullToken, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo') && realServices.hasBinary('htpasswd');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: needs docker-registry, skopeo and htpasswd; bash .ci/install-packages.sh)';

async function skopeoCopy(vr: VirtualRegistry, ref: string, dir: string): Promise<void> {
  await run(
    'skopeo',
    ['copy', '--src-tls-verify=false', '--src-creds', `${vr.pullUser.username}:${vr.pullUser.token}`, `docker://${vr.imagePrefix}/${ref}`, `dir:${dir}`],
    { timeout: 120_000 },
  );
}

function expectDirMatches(dir: string, image: ImageManifestFixture): void {
  expect(readFileSync(join(dir, 'manifest.json')).equals(image.manifest)).toBe(true);
  for (const blob of [image.config, ...image.layers]) {
    expect([blob.digest, sha256Digest(readFileSync(join(dir, blob.digest.replace(/^sha256:/, ''))))]).toEqual([blob.digest, blob.digest]);
  }
}

async function expectBlob(res: Response, digest: string): Promise<void> {
  expect([digest, res.status]).toEqual([digest, 200]);
  expect(sha256Digest(Buffer.from(await res.arrayBuffer()))).toBe(digest);
}

suite(`pull through upstreams that require credentials${reason}`, () => {
  let app: TestApp;
  let basic: UpstreamRegistry;
  let bearer: UpstreamRegistry;
  let basicImage: ImageManifestFixture;
  let tokenImage: ImageManifestFixture;
  let otherImage: ImageManifestFixture;
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'cvr-auth-'));
    dirs.push(d);
    rmSync(d, { recursive: true });
    return d;
  };

  beforeAll(async () => {
    [basic, bearer] = await Promise.all([startUpstreamRegistry({ auth: 'basic' }), startUpstreamRegistry({ auth: 'token' })]);
    basicImage = await buildDockerImage({ seed: 'auth-basic' });
    tokenImage = await buildImage({ seed: 'auth-token', layerSizes: [64 * 1024, 256 * 1024, 1024 * 1024] });
    otherImage = await buildDockerImage({ seed: 'auth-token-other' });
    await pushImage(basic.url, 'private/basic', 'v1', basicImage, basic.credentials);
    await pushImage(bearer.url, 'private/token', 'v1', tokenImage, bearer.credentials);
    await pushImage(bearer.url, 'private/other', 'v1', otherImage, bearer.credentials);
    app = await startTestApp();
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await Promise.all([basic?.close(), bearer?.close()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('pulls through an upstream that wants HTTP Basic, with the credentials stored on the upstream (skopeo, byte-identical)', async () => {
    const vr = await createVirtualRegistry(app, [{ url: basic.url, username: basic.credentials!.username, password: basic.credentials!.password }]);
    const mark = await basic.mark();
    const dir = tempDir();
    await skopeoCopy(vr, 'private/basic:v1', dir);
    expectDirMatches(dir, basicImage);

    const seen = await basic.requests(mark);
    // what reached the upstream was authenticated: every blob was downloaded with a 200
    for (const blob of [basicImage.config, ...basicImage.layers]) {
      expect(seen.some((e) => e.kind === 'blob' && e.method === 'GET' && e.status === 200 && e.reference === blob.digest)).toBe(true);
    }
  }, 120_000);

  it("does not serve a Basic upstream's content when the stored password is wrong (404 MANIFEST_UNKNOWN, not a 5xx)", async () => {
    const vr = await createVirtualRegistry(app, [{ url: basic.url, username: basic.credentials!.username, password: 'not-the-password' }]);
    const res = await registryFetch(app, vr, 'private/basic', 'manifests/v1');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  it("refuses to use a password copied from another upstream's row: a clean 503, nothing sent upstream", async () => {
    const a = await createVirtualRegistry(app, [{ url: basic.url, username: basic.credentials!.username, password: basic.credentials!.password }]);
    const b = await createVirtualRegistry(app, [{ url: basic.url, username: basic.credentials!.username, password: 'b-has-its-own-password' }]);
    const db = app.app.get(DataSource);
    await db.query(
      `UPDATE upstreams b SET password_ciphertext = a.password_ciphertext, credentials_key_id = a.credentials_key_id FROM upstreams a WHERE a.id = $1 AND b.id = $2`,
      [a.upstreamIds[0], b.upstreamIds[0]],
    );
    const mark = await basic.mark();
    const res = await registryFetch(app, b, 'private/basic', 'manifests/v1');
    const text = await res.text();
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect((JSON.parse(text) as { errors: { code: string }[] }).errors[0].code).toBe('UNAVAILABLE');
    expect(text).not.toMatch(/\bat .*\.[jt]s:\d+|password_ciphertext/);
    // B's pull sent nothing upstream: neither A's credentials nor any other request
    expect(await basic.requests(mark)).toEqual([]);
    expect((await registryFetch(app, a, 'private/basic', 'manifests/v1')).status).toBe(200);
  });

  it('keeps a learnt token realm only for the url it was learnt from; a new url clears it', async () => {
    const vr = await createVirtualRegistry(app, [{ url: bearer.url, username: bearer.credentials!.username, password: bearer.credentials!.password }]);
    const [id] = vr.upstreamIds;
    const upstreams = app.app.get(UpstreamsService);
    const authUrlOf = async () =>
      ((await app.app.get(DataSource).query('SELECT auth_url FROM upstreams WHERE id = $1', [id])) as { auth_url: string | null }[])[0].auth_url;
    const realm = `${bearer.tokenServer!.realm}?service=${encodeURIComponent(bearer.tokenServer!.service)}`;
    const admin = new AdminApi(app.url);
    await admin.expect(200, 'PATCH', `/api/v4/virtual_registries/container/upstreams/${id}`, { url: basic.url });

    // a pull that started before the url changed learns the old url's realm: it is not kept
    await upstreams.rememberAuthUrl(id, realm, bearer.url);
    expect(await authUrlOf()).toBeNull();
    await upstreams.rememberAuthUrl(id, realm, basic.url);
    expect(await authUrlOf()).toBe(realm);
    await admin.expect(200, 'PATCH', `/api/v4/virtual_registries/container/upstreams/${id}`, {
      url: bearer.url,
      username: bearer.credentials!.username,
      password: bearer.credentials!.password,
    });
    expect(await authUrlOf()).toBeNull();

    // and a real pull through the current url learns and keeps its realm
    expect((await registryFetch(app, vr, 'private/token', 'manifests/v1')).status).toBe(200);
    await eventually(async () => (await authUrlOf()) === realm);
  });

  it('pulls through a token-auth upstream and fetches the token once per scope, not once per request', async () => {
    const vr = await createVirtualRegistry(app, [{ url: bearer.url, username: bearer.credentials!.username, password: bearer.credentials!.password }]);
    const tokens = bearer.tokenServer!;
    tokens.reset();
    const mark = await bearer.mark();
    const scope = 'repository:private/token:pull';
    const otherScope = 'repository:private/other:pull';
    const token = await pullToken(app, vr, 'private/token');
    const get = (path: string, init: { method?: string; headers?: Record<string, string> } = {}) =>
      registryFetch(app, vr, 'private/token', path, { ...init, token });

    // 1. a cold burst: the manifest and every blob at once (all of them meet the upstream's challenge together)
    const [manifest, ...blobs] = await Promise.all([get('manifests/v1'), ...[tokenImage.config, ...tokenImage.layers].map((b) => get(`blobs/${b.digest}`))]);
    expect(manifest.status).toBe(200);
    expect(Buffer.from(await manifest.arrayBuffer()).equals(tokenImage.manifest)).toBe(true);
    for (const [i, blob] of [tokenImage.config, ...tokenImage.layers].entries()) await expectBlob(blobs[i], blob.digest);

    // 2. requests that reach the upstream every time: tags/list, HEAD and ranged GET of an uncached blob, tag revalidation
    for (let i = 0; i < 4; i++) {
      const tags = await get('tags/list');
      expect(tags.status).toBe(200);
      expect(((await tags.json()) as { tags: string[] }).tags).toEqual(['v1']);
    }
    const fresh = await createVirtualRegistry(app, [{ url: bearer.url, username: bearer.credentials!.username, password: bearer.credentials!.password }]);
    const freshToken = await pullToken(app, fresh, 'private/token');
    const head = await registryFetch(app, fresh, 'private/token', `blobs/${tokenImage.layers[2].digest}`, { method: 'HEAD', token: freshToken });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(tokenImage.layers[2].size));
    const ranged = await registryFetch(app, fresh, 'private/token', `blobs/${tokenImage.layers[1].digest}`, {
      headers: { range: 'bytes=0-99' },
      token: freshToken,
    });
    expect(ranged.status).toBe(206);
    expect((await ranged.arrayBuffer()).byteLength).toBe(100);
    for (let i = 0; i < 3; i++) {
      await backdateTagCheck(app, '/private/token/manifests/v1');
      const revalidated = await get('manifests/v1');
      expect(revalidated.status).toBe(200);
      expect(revalidated.headers.get('docker-content-digest')).toBe(tokenImage.digest);
      await revalidated.arrayBuffer();
    }

    // 3. a second repository is a second scope: one more token, then none per request
    const otherToken = await pullToken(app, vr, 'private/other');
    for (let i = 0; i < 3; i++) {
      const res = await registryFetch(app, vr, 'private/other', 'tags/list', { token: otherToken });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const otherManifest = await registryFetch(app, vr, 'private/other', 'manifests/v1', { token: otherToken });
    expect(otherManifest.status).toBe(200);
    await expectBlob(await registryFetch(app, vr, 'private/other', `blobs/${otherImage.layers[0].digest}`, { token: otherToken }), otherImage.layers[0].digest);

    // 4. skopeo through the same registry (cache hits and a revalidation): still no new token
    const dir = tempDir();
    await skopeoCopy(vr, 'private/token:v1', dir);
    expectDirMatches(dir, tokenImage);

    const upstreamRequests = (await bearer.requests(mark)).filter((e) => e.kind !== 'base');
    const authorized = upstreamRequests.filter((e) => e.status >= 200 && e.status < 300);
    expect(authorized.length).toBeGreaterThanOrEqual(15); // many requests reached the upstream...
    // ...on the strength of one token per (upstream, scope): `fresh` is a second upstream row, so a second key
    const issuedFor = (s: string) => tokens.requests().filter((r) => r.status === 200 && r.scopes.includes(s)).length;
    expect({ [scope]: issuedFor(scope), [otherScope]: issuedFor(otherScope) }).toEqual({ [scope]: 2, [otherScope]: 1 });
    expect(tokens.issuedCount()).toBe(3);
    expect(tokens.requests().filter((r) => r.status !== 200)).toEqual([]);
  }, 120_000);

  it('per upstream and scope: one registry, several requests for one repository -> exactly one token', async () => {
    const vr = await createVirtualRegistry(app, [{ url: bearer.url, username: bearer.credentials!.username, password: bearer.credentials!.password }]);
    const tokens = bearer.tokenServer!;
    tokens.reset();
    const token = await pullToken(app, vr, 'private/token');
    const get = (path: string, init: { method?: string } = {}) => registryFetch(app, vr, 'private/token', path, { ...init, token });
    // concurrent cold requests, then sequential ones that each reach the upstream
    const burst = await Promise.all([get('manifests/v1'), get('tags/list'), get(`blobs/${tokenImage.config.digest}`, { method: 'HEAD' })]);
    for (const res of burst) {
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    for (let i = 0; i < 5; i++) {
      const res = await get('tags/list');
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    await expectBlob(await get(`blobs/${tokenImage.layers[0].digest}`), tokenImage.layers[0].digest);
    expect(tokens.issuedCount('repository:private/token:pull')).toBe(1);
    expect(tokens.issuedCount()).toBe(1);
  });
});
