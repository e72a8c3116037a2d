/**
 * Issue 12 (SPEC section 3, cache decision 7): storage dedupes bytes, never access.
 *
 * Group A's registry pulls a private image through an upstream with credentials, so its manifest, config
 * and layers are cached. User M (no admin, only an `api` token) creates group B, a registry and an upstream
 * at a server M runs, which claims every digest on HEAD (200, digest echoed) and serves nothing on GET
 * (404). Through B, M asks for A's digests:
 * - GET: 404 MANIFEST_UNKNOWN / BLOB_UNKNOWN, the very answer (status, headers, body) of a digest cached
 *   nowhere, no byte of A's content, and the pull did go to M's own upstream (its GET is recorded);
 * - HEAD: the same answer as for a digest cached nowhere, and the fills it queues cache nothing;
 * - with an honest upstream that really serves the same bytes, M gets them, and the store keeps one object.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BLOB_STORE, type BlobStore } from '../src/storage/blob-store.js';
import { accessLog } from './support/access-log.js';
import { AdminApi, eventually } from './support/admin-api.js';
import { cacheEntryRows, waitForLiveRow } from './support/cache-observation.js';
import { MEDIA_TYPES, blobBytes, buildDockerImage, imageBlobs, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { startLyingUpstream, type LyingUpstream } from './support/lying-upstream.js';
import { realServices } from './support/services.js';
import { databaseTargets, startTestApp, type DatabaseTarget, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, pullToken, registryFetch, type RegistryOwner, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo') && realServices.hasBinary('htpasswd');
const suite = canRun ? describe.each(databaseTargets()) : describe.skip.each(databaseTargets());
const reason = canRun ? '' : ' (skipped: needs docker-registry, skopeo and htpasswd; bash .ci/install-packages.sh)';

/** The repository A's image lives in upstream; M asks for A's digests under it and under a name of its own. */
const PRIVATE_NAME = 'private/app';
const NAMES_M_TRIES = ['x/y', PRIVATE_NAME];
const MANIFEST_ACCEPT = [MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex].join(', ');
/** Headers whose values differ from one request to the next, whatever was asked. */
const PER_REQUEST_HEADERS = new Set(['date', 'x-request-id', 'connection', 'keep-alive']);

interface ContentRef {
  what: string;
  digest: string;
  /** `manifests/<digest>` or `blobs/<digest>` */
  path: string;
  bytes: Buffer;
}

/** What a client can observe of one answer, with the requested digest written as `<digest>`. */
interface Observed {
  status: number;
  headers: Record<string, string>;
  body: string;
}

async function observe(res: Response, digest: string): Promise<Observed & { raw: Buffer }> {
  const raw = Buffer.from(await res.arrayBuffer());
  const anonymise = (s: string) => s.split(digest).join('<digest>');
  const headers = Object.fromEntries([...res.headers].filter(([name]) => !PER_REQUEST_HEADERS.has(name)).map(([name, value]) => [name, anonymise(value)]));
  return { status: res.status, headers, body: anonymise(raw.toString('utf8')), raw };
}

function randomDigest(): string {
  return sha256Digest(randomBytes(64));
}

function refPath(kind: 'manifests' | 'blobs', digest: string): string {
  return `${kind}/${digest}`;
}

suite(`tenancy: a digest cached for one group never reaches another's registry (%s database)${reason}`, (database: DatabaseTarget) => {
  let app: TestApp;
  /** Group A's private registry (HTTP Basic) and an honest public mirror holding the same image. */
  let privateUpstream: UpstreamRegistry;
  let mirror: UpstreamRegistry;
  let liar: LyingUpstream;
  let image: ImageManifestFixture;
  let contents: ContentRef[];
  let vrA: VirtualRegistry;
  let mallory: RegistryOwner;
  let vrB: VirtualRegistry;
  const dirs: string[] = [];

  const fetchThrough = async (vr: VirtualRegistry, name: string, path: string, method: 'GET' | 'HEAD', token: string) =>
    registryFetch(app, vr, name, path, { method, token, headers: path.startsWith('manifests/') ? { accept: MANIFEST_ACCEPT } : {} });

  beforeAll(async () => {
    [privateUpstream, mirror] = await Promise.all([startUpstreamRegistry({ auth: 'basic' }), startUpstreamRegistry()]);
    liar = await startLyingUpstream();
    image = await buildDockerImage({ seed: `tenancy-private-${database}` });
    await pushImage(privateUpstream.url, PRIVATE_NAME, '1.0', image, privateUpstream.credentials);
    await pushImage(mirror.url, 'mirror/app', '1.0', image);
    const read = async (digest: string) => {
      const chunks: Buffer[] = [];
      for await (const chunk of blobBytes(image, digest)) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks); // a fixture layer of some KiB, compared with every answer's body
    };
    contents = [
      { what: 'manifest', digest: image.digest, path: refPath('manifests', image.digest), bytes: image.manifest },
      ...(await Promise.all(
        imageBlobs(image).map(async (b, i) => ({
          what: i === 0 ? 'config' : `layer ${i}`,
          digest: b.digest,
          path: refPath('blobs', b.digest),
          bytes: await read(b.digest),
        })),
      )),
    ];
    // every pull below must reach B's upstream (that is how the tests see where it went): no remembered 404s
    app = await startTestApp({ UPSTREAM_NEGATIVE_CACHE_MS: '0' }, { database });

    vrA = await createVirtualRegistry(app, [
      { url: privateUpstream.url, username: privateUpstream.credentials!.username, password: privateUpstream.credentials!.password },
    ]);
    const admin = new AdminApi(app.url);
    mallory = { username: 'mallory', token: await admin.createUserToken('mallory') };
    vrB = await createVirtualRegistry(app, [{ url: liar.url }], mallory);

    // Group A pulls its private image with a real client.
    const dir = mkdtempSync(join(tmpdir(), 'cvr-tenancy-'));
    dirs.push(dir);
    rmSync(dir, { recursive: true });
    await run(
      'skopeo',
      [
        'copy',
        '--src-tls-verify=false',
        '--src-creds',
        `${vrA.pullUser.username}:${vrA.pullUser.token}`,
        `docker://${vrA.imagePrefix}/${PRIVATE_NAME}:1.0`,
        `dir:${dir}`,
      ],
      { timeout: 120_000 },
    );
    expect(readFileSync(join(dir, 'manifest.json')).equals(image.manifest)).toBe(true);
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    await liar?.close();
    await Promise.all([privateUpstream?.close(), mirror?.close()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("group A's pull cached the manifest, the config and every layer for A's upstream; M is no member of A's group and owns group B", async () => {
    for (const c of contents) {
      const row = await waitForLiveRow(app, `/${PRIVATE_NAME}/${c.path}`, 10_000, vrA.upstreamIds);
      expect([c.what, row?.digest]).toEqual([c.what, c.digest]);
    }
    const asMallory = new AdminApi(app.url, mallory.token);
    expect((await asMallory.get(`/api/v4/groups/${vrA.groupId}`)).status).toBe(404);
    expect((await asMallory.get(`/api/v4/groups/${vrB.groupId}`)).status).toBe(200);
    expect((await asMallory.get('/api/v4/user')).body).toMatchObject({ username: 'mallory', is_admin: false });
  });

  it("GET through B of A's manifest and blob digests: 404 OCI errors identical to a digest cached nowhere, no byte of A's, and B's upstream was asked", async () => {
    for (const name of NAMES_M_TRIES) {
      const token = await pullToken(app, vrB, name);
      for (const c of contents) {
        const kind = c.path.startsWith('manifests/') ? 'manifests' : 'blobs';
        const code = kind === 'manifests' ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN';
        const getsBefore = liar.requestsFor('GET', c.digest).length;
        const got = await observe(await fetchThrough(vrB, name, c.path, 'GET', token), c.digest);
        const nowhere = randomDigest();
        const baseline = await observe(await fetchThrough(vrB, name, refPath(kind, nowhere), 'GET', token), nowhere);

        const label = `${name} ${c.what}`;
        // [label, A's bytes in the body, the body is A's content]
        expect([label, got.raw.includes(c.bytes), sha256Digest(got.raw) === c.digest]).toEqual([label, false, false]);
        expect([label, got.status]).toEqual([label, 404]);
        expect([label, (JSON.parse(got.body) as { errors: { code: string }[] }).errors.map((e) => e.code)]).toEqual([label, [code]]);
        // the same answer as for content cached nowhere: nothing tells M that A has this digest
        expect([label, { status: got.status, headers: got.headers, body: got.body }]).toEqual([
          label,
          { status: baseline.status, headers: baseline.headers, body: baseline.body },
        ]);
        // the pull went to B's own upstream, which said 404
        expect([label, liar.requestsFor('GET', c.digest).length]).toEqual([label, getsBefore + 1]);
        expect([label, liar.requestsFor('GET', c.digest).every((r) => r.status === 404)]).toEqual([label, true]);
      }
    }
    for (const c of contents) expect([c.what, await cacheEntryRows(app, c.path, vrB.upstreamIds)]).toEqual([c.what, []]);
  });

  it("HEAD through B of A's digests answers as for a digest cached nowhere, and the fills it queues cache nothing", async () => {
    for (const name of NAMES_M_TRIES) {
      const token = await pullToken(app, vrB, name);
      for (const c of contents) {
        const kind = c.path.startsWith('manifests/') ? 'manifests' : 'blobs';
        const getsBefore = liar.requestsFor('GET', c.digest).length;
        const head = await observe(await fetchThrough(vrB, name, c.path, 'HEAD', token), c.digest);
        const nowhere = randomDigest();
        const baseline = await observe(await fetchThrough(vrB, name, refPath(kind, nowhere), 'HEAD', token), nowhere);

        const label = `${name} ${c.what}`;
        expect([label, head.raw.length]).toEqual([label, 0]);
        expect([label, { status: head.status, headers: head.headers }]).toEqual([label, { status: baseline.status, headers: baseline.headers }]);
        // never the size of A's stored object: whatever B answers comes from B's upstream
        if (head.status === 200) expect([label, head.headers['content-length']]).not.toEqual([label, String(c.bytes.length)]);
        else expect([label, head.status]).toEqual([label, 404]);
        // a manifest HEAD is a GET upstream; a blob HEAD queues a fill, whose GET the liar answers 404
        await eventually(async () => liar.requestsFor('GET', c.digest).length > getsBefore, 30_000);
      }
    }
    for (const c of contents) expect([c.what, await cacheEntryRows(app, c.path, vrB.upstreamIds)]).toEqual([c.what, []]);

    // and after those fills, GET through B still gets nothing
    const token = await pullToken(app, vrB, 'x/y');
    for (const c of contents) {
      const res = await fetchThrough(vrB, 'x/y', c.path, 'GET', token);
      const body = Buffer.from(await res.arrayBuffer());
      expect([c.what, res.status, body.includes(c.bytes)]).toEqual([c.what, 404, false]);
    }
  }, 120_000);

  it("an honest upstream of M's that serves the same bytes: M gets them, by a GET from that upstream, and the store keeps one object per digest", async () => {
    const store = app.app.get<BlobStore>(BLOB_STORE);
    const objects = async () => {
      const all: string[] = [];
      for await (const o of store.list()) all.push(o.digest);
      return all.sort();
    };
    const before = await objects();
    for (const c of contents) expect([c.what, before.filter((d) => d === c.digest).length]).toEqual([c.what, 1]);

    const vrHonest = await createVirtualRegistry(app, [{ url: mirror.url }], mallory);
    const mark = await mirror.mark();
    const token = await pullToken(app, vrHonest, 'mirror/app');
    for (const c of contents) {
      const res = await fetchThrough(vrHonest, 'mirror/app', c.path, 'GET', token);
      const body = Buffer.from(await res.arrayBuffer());
      expect([c.what, res.status, sha256Digest(body), body.equals(c.bytes)]).toEqual([c.what, 200, c.digest, true]);
    }
    const served = await mirror.requests(mark);
    expect(accessLog.manifestRequests(served, 'mirror/app', image.digest).filter((e) => e.method === 'GET' && e.status === 200)).toHaveLength(1);
    for (const c of contents.filter((x) => x.path.startsWith('blobs/'))) {
      expect([c.what, accessLog.blobDownloads(served, c.digest).length]).toEqual([c.what, 1]);
    }
    for (const c of contents) {
      const row = await waitForLiveRow(app, `/mirror/app/${c.path}`, 10_000, vrHonest.upstreamIds);
      expect([c.what, row?.digest]).toEqual([c.what, c.digest]);
    }

    // bytes deduped: the same objects as before M's pull, each once, and no write left behind
    expect(await objects()).toEqual(before);
    const temporary: unknown[] = [];
    for await (const t of store.listTemporary()) temporary.push(t);
    expect(temporary).toEqual([]);
  }, 60_000);
});
