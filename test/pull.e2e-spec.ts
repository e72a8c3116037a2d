/**
 * The pull path end to end: the app in front of real upstream registries (Debian's docker-registry,
 * CNCF Distribution 2.8) seeded with generated images, pulled by real clients (skopeo, podman).
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DeleteObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { blobContentPath } from '../src/storage/blob-store.js';
import { backdateTagCheck, liveCacheEntryRows, waitForLiveRow } from './support/cache-observation.js';
import { accessLog } from './support/access-log.js';
import {
  blobBytes,
  buildDockerImage,
  buildImageIndex,
  buildOciImage,
  pushImage,
  sha256Digest,
  streamDigest,
  type ImageManifestFixture,
} from './support/image-fixtures.js';
import { s3StorageEnv, startS3Server, type S3TestServer } from './support/s3-server.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const run = promisify(execFile);
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry or skopeo is not installed; bash .ci/install-packages.sh)';

async function skopeoCopy(vr: VirtualRegistry, ref: string, dir: string, extra: string[] = []): Promise<void> {
  await run(
    'skopeo',
    [
      'copy',
      '--src-tls-verify=false',
      '--src-creds',
      `${vr.pullUser.username}:${vr.pullUser.token}`,
      ...extra,
      `docker://${vr.imagePrefix}/${ref}`,
      `dir:${dir}`,
    ],
    { timeout: 120_000 },
  );
}

function rawRequest(base: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    const req = request({ hostname, port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function dirFile(dir: string, digest: string): Buffer {
  return readFileSync(join(dir, digest.replace(/^sha256:/, '')));
}

describe.each(['filesystem', 's3'] as const)('storage %s:', (storage) => {
  suite(`pull path against a real upstream${reason}`, () => {
    let app: TestApp;
    let upstream: UpstreamRegistry;
    let second: UpstreamRegistry;
    let docker: ImageManifestFixture;
    let big: ImageManifestFixture;
    let vr: VirtualRegistry;
    let s3Server: S3TestServer | undefined;
    const dirs: string[] = [];
    /** An S3-compatible server (s3rver) with a fresh bucket; the app gets STORAGE_DRIVER=s3 pointing at it. */
    const startS3Storage = async (cleanup: string[]): Promise<Record<string, string>> => {
      const dir = mkdtempSync(join(tmpdir(), 'cvr-s3-'));
      cleanup.push(dir);
      s3Server = await startS3Server(dir);
      return s3StorageEnv(s3Server);
    };
    const tempDir = () => {
      const d = mkdtempSync(join(tmpdir(), 'cvr-pull-'));
      dirs.push(d);
      rmSync(d, { recursive: true });
      return d;
    };

    beforeAll(async () => {
      [upstream, second] = await Promise.all([startUpstreamRegistry(), startUpstreamRegistry()]);
      docker = await buildDockerImage({ seed: 'pull-docker' });
      big = await buildOciImage({ seed: 'pull-big', layerSizes: [100 * 1024 * 1024] } as never);
      await pushImage(upstream.url, 'library/alpine', 'latest', docker);
      await pushImage(upstream.url, 'team/big', '1.0', big);
      await pushImage(upstream.url, 'multi/arch', 'latest', await buildImageIndex({ seed: 'pull-index' }));
      await pushImage(second.url, 'only/second', 'v1', await buildDockerImage({ seed: 'only-second' }));
      await pushImage(second.url, 'library/alpine', 'latest', await buildDockerImage({ seed: 'alpine-on-second' }));
      app = await startTestApp(storage === 's3' ? await startS3Storage(dirs) : {});
      vr = await createVirtualRegistry(app, [{ url: upstream.url }, { url: second.url }]);
    }, 180_000);

    afterAll(async () => {
      await app?.close();
      await s3Server?.stop();
      await Promise.all([upstream?.close(), second?.close()]);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });

    it('skopeo copies a Docker schema2 image byte-identical to the upstream, one upstream GET per blob; then fully from cache', async () => {
      const mark = await upstream.mark();
      const dir = tempDir();
      await skopeoCopy(vr, 'library/alpine:latest', dir);
      expect(readFileSync(join(dir, 'manifest.json')).equals(docker.manifest)).toBe(true);
      for (const blob of [docker.config, ...docker.layers]) {
        expect(sha256Digest(dirFile(dir, blob.digest))).toBe(blob.digest);
      }
      const cold = await upstream.requests(mark);
      for (const blob of [docker.config, ...docker.layers]) {
        expect([blob.digest, accessLog.blobDownloads(cold, blob.digest).length]).toEqual([blob.digest, 1]);
      }

      // the fills have recorded their entries (the last may commit just after its client got the last byte;
      // on S3 that is after the object's upload, which a loaded CI machine's s3rver has taken over 10 s to take)
      for (const blob of [docker.config, ...docker.layers]) expect(await waitForLiveRow(app, `/library/alpine/blobs/${blob.digest}`, 30_000)).toBeDefined();
      const warmMark = await upstream.mark();
      await skopeoCopy(vr, 'library/alpine:latest', tempDir());
      const warm = await upstream.requests(warmMark);
      expect(warm).toEqual([]); // tag within its validity window and every digest: no upstream contact at all
    }, 120_000);

    it('copies a multi-arch index with --all: the index and both children keep their digests', async () => {
      const dir = tempDir();
      await skopeoCopy(vr, 'multi/arch:latest', dir, ['--all']);
      const index = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { manifests: { digest: string }[] };
      expect(index.manifests).toHaveLength(2);
      const files = readdirSync(dir);
      for (const child of index.manifests) {
        expect(files.some((f) => f.startsWith(child.digest.replace('sha256:', '')))).toBe(true);
      }
    }, 120_000);

    it('streams an image with a 100 MiB layer and caches it (second pull makes no upstream blob GET)', async () => {
      const dir = tempDir();
      const mark = await upstream.mark();
      await skopeoCopy(vr, 'team/big:1.0', dir);
      const layer = big.layers[0];
      expect((await streamDigest(blobBytes(big, layer.digest))).digest).toBe(layer.digest);
      expect(sha256Digest(dirFile(dir, layer.digest))).toBe(layer.digest);
      expect(accessLog.blobDownloads(await upstream.requests(mark), layer.digest)).toHaveLength(1);
      expect(await waitForLiveRow(app, `/team/big/blobs/${layer.digest}`, 10_000)).toBeDefined();
      const warmMark = await upstream.mark();
      await skopeoCopy(vr, 'team/big:1.0', tempDir());
      expect(accessLog.blobDownloads(await upstream.requests(warmMark))).toHaveLength(0);
    }, 180_000);

    it('walks upstreams in position order: only on the second -> from the second; on both -> from the first', async () => {
      const onlySecond = await registryFetch(app, vr, 'only/second', 'manifests/v1');
      expect(onlySecond.status).toBe(200);
      const both = await registryFetch(app, vr, 'library/alpine', 'manifests/latest');
      expect(both.status).toBe(200);
      expect(both.headers.get('docker-content-digest')).toBe(docker.digest);

      // A blob only the second has: the first upstream's 404 starts no fill, and the spool file made while
      // it answered is gone (the filesystem driver's are named in _uploads; S3's spools are unlinked at once).
      const { layers } = (await onlySecond.json()) as { layers: { digest: string; size: number }[] };
      const blob = await registryFetch(app, vr, 'only/second', `blobs/${layers[0].digest}`);
      expect(blob.status).toBe(200);
      expect((await blob.arrayBuffer()).byteLength).toBe(layers[0].size);
      expect(await waitForLiveRow(app, layers[0].digest, 10_000)).toBeDefined();
      if (storage === 'filesystem') expect(readdirSync(join(app.dataDir, 'blobs', '_uploads'))).toEqual([]);
    });

    it('answers HEAD on an uncached blob with size and digest, and Range with 206 on a miss and on a hit', async () => {
      const layer = big.layers[0];
      const vr2 = await createVirtualRegistry(app, [{ url: upstream.url }]); // a fresh registry: nothing cached for its upstream
      const head = await registryFetch(app, vr2, 'team/big', `blobs/${big.config.digest}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(big.config.size));
      expect(head.headers.get('docker-content-digest')).toBe(big.config.digest);

      const expected = Buffer.alloc(100);
      let offset = 0;
      for await (const chunk of blobBytes(big, layer.digest)) {
        const buf = chunk as Buffer;
        const from = Math.max(0, 100 - offset);
        const to = Math.min(buf.length, 200 - offset);
        if (to > from) buf.copy(expected, offset + from - 100, from, to);
        offset += buf.length;
        if (offset >= 200) break;
      }
      for (const registry of [vr2, vr]) {
        const res = await registryFetch(app, registry, 'team/big', `blobs/${layer.digest}`, { headers: { range: 'bytes=100-199' } });
        expect(res.status).toBe(206);
        expect(res.headers.get('content-range')).toBe(`bytes 100-199/${layer.size}`);
        expect(Buffer.from(await res.arrayBuffer()).equals(expected)).toBe(true);
      }
      // The HEAD and the ranged miss each asked for a fill job on vr2's upstream: both go live, and their GETs end
      // here, not inside the next test's count of upstream requests (a CI run once saw the config's GET there).
      for (const digest of [big.config.digest, layer.digest]) {
        expect([digest, (await waitForLiveRow(app, `/team/big/blobs/${digest}`, 60_000, vr2.upstreamIds)) !== undefined]).toEqual([digest, true]);
      }
    }, 180_000);

    it('by digest: zero upstream requests on a hit; by tag: zero within the validity window, one HEAD after it', async () => {
      await registryFetch(app, vr, 'library/alpine', 'manifests/latest'); // cached (earlier test or now)
      let mark = await upstream.mark();
      expect((await registryFetch(app, vr, 'library/alpine', `manifests/${docker.digest}`)).status).toBe(200);
      expect((await registryFetch(app, vr, 'library/alpine', `blobs/${docker.layers[0].digest}`)).status).toBe(200);
      expect((await registryFetch(app, vr, 'library/alpine', 'manifests/latest')).status).toBe(200);
      expect(await upstream.requests(mark)).toEqual([]);

      await backdateTagCheck(app, '/library/alpine/manifests/latest');
      mark = await upstream.mark();
      const res = await registryFetch(app, vr, 'library/alpine', 'manifests/latest');
      expect(res.status).toBe(200);
      const after = (await upstream.requests(mark)).filter((e) => e.kind === 'manifest');
      expect(after.map((e) => e.method)).toEqual(['HEAD']);
    });

    it('serves cached content while the upstream is down, and 503 OCI JSON for what is not cached', async () => {
      await registryFetch(app, vr, 'library/alpine', 'manifests/latest');
      await backdateTagCheck(app, '/library/alpine/manifests/latest');
      await Promise.all([upstream.stop(), second.stop()]);
      try {
        const byTag = await registryFetch(app, vr, 'library/alpine', 'manifests/latest');
        expect(byTag.status).toBe(200);
        expect(byTag.headers.get('docker-content-digest')).toBe(docker.digest);
        expect((await registryFetch(app, vr, 'library/alpine', `manifests/${docker.digest}`)).status).toBe(200);
        const layer = await registryFetch(app, vr, 'library/alpine', `blobs/${docker.layers[0].digest}`);
        expect(layer.status).toBe(200);
        expect(sha256Digest(Buffer.from(await layer.arrayBuffer()))).toBe(docker.layers[0].digest);

        const uncached = await registryFetch(app, vr, 'never/pulled', 'manifests/latest');
        expect(uncached.status).toBe(503);
        expect(((await uncached.json()) as { errors: { code: string }[] }).errors[0].code).toBe('UNAVAILABLE');
      } finally {
        await Promise.all([upstream.restart(), second.restart()]);
      }
    }, 60_000);

    it('a cached manifest whose stored object is gone is fetched from the upstream again and cached anew; with the upstream down, 503 OCI JSON', async () => {
      const image = await buildDockerImage({ seed: 'lost-manifest' });
      const other = await buildDockerImage({ seed: 'lost-manifest-while-down' });
      await pushImage(upstream.url, 'team/lost', 'v1', image);
      await pushImage(upstream.url, 'team/lost', 'v2', other);
      const manifestGets = async (mark: number) => (await upstream.requests(mark)).filter((e) => e.kind === 'manifest' && e.method === 'GET').length;
      /** Deletes a manifest's stored object behind the app's back (a disk fault, an operator, a lost race with the destroy job). */
      const loseObject = async (digest: string) => {
        if (storage === 'filesystem') return unlinkSync(join(app.dataDir, 'blobs', blobContentPath(digest)));
        const client = new S3Client({
          endpoint: s3Server!.endpoint,
          region: 'us-east-1',
          forcePathStyle: true,
          credentials: { accessKeyId: s3Server!.accessKeyId, secretAccessKey: s3Server!.secretAccessKey },
        });
        await client.send(new DeleteObjectCommand({ Bucket: 'registry-cache', Key: `blobs/${blobContentPath(digest)}` }));
        client.destroy();
      };
      const pull = async (reference: string) => {
        const res = await registryFetch(app, vr, 'team/lost', `manifests/${reference}`);
        return { status: res.status, digest: res.headers.get('docker-content-digest'), body: Buffer.from(await res.arrayBuffer()) };
      };

      let mark = await upstream.mark();
      expect(await pull('v1')).toEqual({ status: 200, digest: image.digest, body: image.manifest }); // a miss: stored under the tag and the digest
      expect(await waitForLiveRow(app, `/team/lost/manifests/${image.digest}`, 10_000)).toBeDefined();
      expect(await manifestGets(mark)).toBe(1);

      const [lost] = await liveCacheEntryRows(app, '/team/lost/manifests/v1', vr.upstreamIds);
      await loseObject(image.digest);
      mark = await upstream.mark();
      expect(await pull('v1')).toEqual({ status: 200, digest: image.digest, body: image.manifest }); // the row leads nowhere: asked again
      expect(await manifestGets(mark)).toBe(1);
      // The lost entry was handed to the destroy job; the manifest is cached under a new one.
      expect((await liveCacheEntryRows(app, '/team/lost/manifests/v1', vr.upstreamIds)).map((row) => row.id === lost.id)).toEqual([false]);
      mark = await upstream.mark();
      expect(await pull(image.digest)).toEqual({ status: 200, digest: image.digest, body: image.manifest }); // stored again: a hit
      expect(await pull('v1')).toEqual({ status: 200, digest: image.digest, body: image.manifest });
      expect(await upstream.requests(mark)).toEqual([]);

      // Pulled once (a miss: nothing kept in memory), its object lost, then asked for while no upstream answers.
      expect(await pull(other.digest)).toEqual({ status: 200, digest: other.digest, body: other.manifest });
      expect(await waitForLiveRow(app, `/team/lost/manifests/${other.digest}`, 10_000)).toBeDefined();
      await loseObject(other.digest);
      await Promise.all([upstream.stop(), second.stop()]);
      try {
        const down = await registryFetch(app, vr, 'team/lost', `manifests/${other.digest}`);
        expect(down.status).toBe(503);
        expect(((await down.json()) as { errors: { code: string }[] }).errors[0].code).toBe('UNAVAILABLE');
      } finally {
        await Promise.all([upstream.restart(), second.restart()]);
      }
      expect(await pull(other.digest)).toEqual({ status: 200, digest: other.digest, body: other.manifest }); // the upstream is back: cached anew
    }, 60_000);

    it('refuses bad input with 400 OCI errors and push verbs with 405, never a 500', async () => {
      const cases: [string, string, number, string][] = [
        ['GET', 'Library/alpine/manifests/latest', 400, 'NAME_INVALID'],
        ['GET', 'library/../etc/manifests/latest', 400, 'NAME_INVALID'],
        ['GET', 'library/%2e%2e/manifests/latest', 400, 'NAME_INVALID'],
        ['GET', 'library/alpine/blobs/md5:abc', 400, 'DIGEST_INVALID'],
        ['GET', 'library/alpine/blobs/sha256:xyz', 400, 'DIGEST_INVALID'],
        ['GET', `${'a'.repeat(300)}/manifests/latest`, 400, 'NAME_INVALID'],
        ['PUT', 'library/alpine/manifests/latest', 405, 'UNSUPPORTED'],
        ['DELETE', 'library/alpine/blobs/sha256:' + '0'.repeat(64), 405, 'UNSUPPORTED'],
      ];
      for (const [method, path, status, code] of cases) {
        // node:http sends the path as written (fetch would resolve the `..` before sending it)
        const res = await rawRequest(app.url, method, `/v2/virtual_registries/containers/${vr.registryId}/${path}`);
        const code_ = (JSON.parse(res.body) as { errors?: { code: string }[] }).errors?.[0].code ?? res.body;
        expect([method, path, res.status, code_]).toEqual([method, path, status, code]);
      }
    });

    const podman = realServices.hasBinary('podman') ? it : it.skip;
    podman(
      'podman login + podman pull work through the virtual registry (the seed merge request steps 2 and 3)',
      async () => {
        const root = tempDir();
        const env = { ...process.env, REGISTRY_AUTH_FILE: join(root + '-auth.json') };
        const host = new URL(app.url).host;
        await run(
          'podman',
          ['login', '--tls-verify=false', '-u', vr.pullUser.username, '-p', vr.pullUser.token, `${host}/virtual_registries/containers/${vr.registryId}`],
          { env, timeout: 60_000 },
        );
        const storage = ['--root', join(root, 'storage'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs'];
        await run('podman', [...storage, 'pull', '--tls-verify=false', `${vr.imagePrefix}/library/alpine:latest`], { env, timeout: 120_000 });
        const { stdout } = await run('podman', [...storage, 'images', '--format', '{{.Digest}}'], { env });
        expect(stdout).toContain(docker.digest);
        rmSync(root + '-auth.json', { force: true });
      },
      180_000,
    );
  });
});
