/**
 * Self-check of the e2e support: a real Distribution 2.8 upstream in each auth mode, images generated and
 * pushed by image-fixtures, then read back by a real client (skopeo, and podman where installed) and
 * compared byte for byte; access-log and token-server counts checked along the way.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { accessLog } from './support/access-log.js';
import {
  blobBytes,
  buildDockerImage,
  buildImageIndex,
  buildOciImage,
  fileDigest,
  MEDIA_TYPES,
  pushImage,
  streamDigest,
  type ImageFixture,
} from './support/image-fixtures.js';
import { builtProbe, runChildProbe } from './support/child-probe.js';
import type { PushImageMemoryReport } from './support/push-image-memory.probe.js';
import { realServices } from './support/services.js';
import { startUpstreamRegistry, type UpstreamAuthMode, type UpstreamRegistry } from './support/upstream-registry.js';

const execFileAsync = promisify(execFile);

const missing = ['docker-registry', 'skopeo', 'htpasswd', 'openssl'].filter((bin) => !realServices.hasBinary(bin));
const suite = missing.length === 0 ? describe : describe.skip;
const skipReason = missing.length ? ` (skipped: ${missing.join(', ')} not installed; run .ci/install-packages.sh)` : '';
if (missing.length) process.stderr.write(`support-selfcheck e2e suite skipped: missing ${missing.join(', ')}\n`);

let workDir: string;
let policyPath: string;

async function skopeo(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('skopeo', ['--policy', policyPath, ...args], { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

function credsArgs(upstream: UpstreamRegistry, flag = '--creds'): string[] {
  return upstream.credentials ? [flag, `${upstream.credentials.username}:${upstream.credentials.password}`] : [];
}

/** skopeo copy to a dir: layout, then check every file against the fixture's bytes. */
async function copyAndCompare(upstream: UpstreamRegistry, ref: string, image: ImageFixture, all = false): Promise<string> {
  const dest = await mkdtemp(join(workDir, 'copy-'));
  await skopeo([
    'copy',
    ...(all ? ['--all'] : []),
    '--src-tls-verify=false',
    ...credsArgs(upstream, '--src-creds'),
    `docker://${upstream.host}/${ref}`,
    `dir:${dest}`,
  ]);
  const manifests = image.kind === 'index' ? (all ? [image, ...image.children] : [image.children[0]]) : [image];
  const top = manifests[0];
  expect((await readFile(join(dest, 'manifest.json'))).equals(top.manifest)).toBe(true);
  for (const m of manifests) {
    if (m.kind !== 'manifest') continue;
    for (const blob of [m.config, ...m.layers]) {
      const onDisk = await fileDigest(join(dest, blob.digest.slice('sha256:'.length)));
      expect(onDisk).toEqual({ digest: blob.digest, size: blob.size });
    }
  }
  return dest;
}

suite(`e2e support self-check: upstream registry, token server, image fixtures${skipReason}`, () => {
  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'support-selfcheck-'));
    policyPath = join(workDir, 'policy.json');
    await writeFile(policyPath, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  });
  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  describe('image fixtures', () => {
    it('are deterministic: the same seed gives the same digests, another seed different ones', async () => {
      const a = await buildDockerImage({ seed: 'determinism' });
      const b = await buildDockerImage({ seed: 'determinism' });
      const c = await buildDockerImage({ seed: 'determinism-2' });
      expect(b.digest).toBe(a.digest);
      expect(b.layers.map((l) => l.digest)).toEqual(a.layers.map((l) => l.digest));
      expect(c.digest).not.toBe(a.digest);
      expect((await streamDigest(a.layers[1].open())).digest).toBe(a.layers[1].digest);
    });

    it('have layers that are gzipped tar archives whose uncompressed digest is the config diff_id', async () => {
      const image = await buildDockerImage();
      const config = JSON.parse((await readFile(await writeBlob(image, image.config.digest))).toString('utf8'));
      expect(config.rootfs.diff_ids).toEqual(image.layers.map((l) => l.diffId));
      for (const layer of image.layers) {
        expect(await streamDigest(layer.open().pipe(createGunzip()))).toMatchObject({ digest: layer.diffId });
        const path = await writeBlob(image, layer.digest);
        const { stdout } = await execFileAsync('tar', ['-tvzf', path]);
        expect(stdout).toMatch(/fixture\/docker-schema2-amd64-layer\d\.txt/);
        expect(stdout).toMatch(/fixture\/docker-schema2-amd64-layer\d\.bin/);
      }
    });

    async function writeBlob(image: ImageFixture, digest: string): Promise<string> {
      const path = join(workDir, digest.replace(':', '-'));
      await writeFile(path, blobBytes(image, digest));
      return path;
    }
  });

  describe.each<UpstreamAuthMode>(['none', 'basic', 'token'])('upstream with auth=%s', (mode) => {
    let upstream: UpstreamRegistry;

    beforeAll(async () => {
      upstream = await startUpstreamRegistry({ auth: mode });
    });
    afterAll(async () => {
      await upstream?.close();
    });

    it('answers /v2/ (with a challenge unless anonymous)', async () => {
      const res = await fetch(`${upstream.url}/v2/`);
      expect(res.status).toBe(mode === 'none' ? 200 : 401);
      if (mode === 'basic') expect(res.headers.get('www-authenticate')).toMatch(/^Basic /);
      if (mode === 'token') expect(res.headers.get('www-authenticate')).toContain(`realm="${upstream.tokenServer!.realm}"`);
    });

    it('serves a pushed docker schema2 image to skopeo inspect and copy, byte for byte', async () => {
      const image = await buildDockerImage();
      const pushed = await pushImage(upstream.url, 'library/schema2', 'v1', image, upstream.credentials);
      expect(pushed.manifestDigest).toBe(image.digest);
      expect(pushed.mediaType).toBe(MEDIA_TYPES.dockerManifest);
      expect(pushed.blobs).toHaveLength(3);

      const inspected = JSON.parse(await skopeo(['inspect', '--tls-verify=false', ...credsArgs(upstream), `docker://${upstream.host}/library/schema2:v1`]));
      expect(inspected.Digest).toBe(image.digest);
      expect(inspected.Layers).toEqual(image.layers.map((l) => l.digest));
      expect(inspected.Env).toContain('FIXTURE_SEED=docker-schema2');

      const since = await upstream.mark();
      await copyAndCompare(upstream, 'library/schema2:v1', image);
      const entries = await upstream.requests(since);
      for (const blob of pushed.blobs) {
        expect(accessLog.blobDownloads(entries, blob.digest)).toHaveLength(1);
        expect(accessLog.blobDownloads(entries, blob.digest)[0]).toMatchObject({ repository: 'library/schema2', bytes: blob.size });
      }
      expect(accessLog.manifestRequests(entries, 'library/schema2', 'v1').length).toBeGreaterThanOrEqual(1);
      if (mode !== 'none') expect(entries.some((e) => e.status === 401)).toBe(true);
    });

    it('serves a pushed OCI index: the index raw, the amd64 child by default, every child with --all', async () => {
      const index = await buildImageIndex();
      const pushed = await pushImage(upstream.url, 'team/multi', 'latest', index, upstream.credentials);
      expect(pushed.children.map((c) => c.platform.architecture)).toEqual(['amd64', 'arm64']);

      const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', ...credsArgs(upstream), `docker://${upstream.host}/team/multi:latest`]);
      expect(Buffer.from(raw).equals(index.manifest)).toBe(true);
      expect(JSON.parse(raw).mediaType).toBe(MEDIA_TYPES.ociIndex);

      await copyAndCompare(upstream, 'team/multi:latest', index);
      const dest = await copyAndCompare(upstream, 'team/multi:latest', index, true);
      const files = await readdir(dest);
      for (const child of index.children) expect(files).toContain(`${child.digest.slice('sha256:'.length)}.manifest.json`);
    });

    if (mode === 'token') {
      it('issues tokens per scope and refuses wrong credentials', async () => {
        const tokens = upstream.tokenServer!;
        tokens.reset();
        await skopeo(['inspect', '--tls-verify=false', ...credsArgs(upstream), `docker://${upstream.host}/library/schema2:v1`]);
        expect(tokens.issuedCount('repository:library/schema2:pull')).toBeGreaterThanOrEqual(1);
        expect(tokens.issuedCount('repository:team/multi:pull')).toBe(0);

        await expect(
          skopeo(['inspect', '--tls-verify=false', '--creds', 'upstream-user:wrong', `docker://${upstream.host}/library/schema2:v1`]),
        ).rejects.toThrow();
        expect(tokens.requests().some((r) => r.status === 401 && r.account === 'upstream-user')).toBe(true);
      });
    } else if (mode === 'basic') {
      it('refuses wrong credentials', async () => {
        await expect(
          skopeo(['inspect', '--tls-verify=false', '--creds', 'upstream-user:wrong', `docker://${upstream.host}/library/schema2:v1`]),
        ).rejects.toThrow();
        const entries = await upstream.requests();
        expect(entries.some((e) => e.status === 401 && e.kind === 'manifest')).toBe(true);
      });
    }
  });

  describe('large OCI image and process control', () => {
    let upstream: UpstreamRegistry;

    beforeAll(async () => {
      upstream = await startUpstreamRegistry();
    });
    afterAll(async () => {
      await upstream?.close();
    });

    it('pushes a 100 MiB layer streamed and skopeo copies it back with the same digest', async () => {
      const image = await buildOciImage();
      const big = image.layers[1];
      expect(big.size).toBeGreaterThan(100 * 1024 * 1024);
      // The push runs in a process of its own, where RSS measures the push and nothing else of the test run.
      const pushed = await runChildProbe<PushImageMemoryReport>(builtProbe('push-image-memory'), [upstream.url, 'library/large', 'v1'], {
        timeoutMs: 150_000,
      });
      expect(pushed).toMatchObject({ digest: image.digest, largeLayer: { digest: big.digest, size: big.size } });
      expect(pushed.growthBytes).toBeLessThan(64 * 1024 * 1024);
      expect(await fileDigest(upstream.blobPath(big.digest))).toEqual({ digest: big.digest, size: big.size });

      await upstream.reset();
      await copyAndCompare(upstream, 'library/large:v1', image);
      const entries = await upstream.requests();
      expect(accessLog.blobDownloads(entries, big.digest)).toHaveLength(1);
      expect(accessLog.blobBytesServed(entries)).toBe(image.config.size + image.layers.reduce((s, l) => s + l.size, 0));
    }, 180_000);

    it('stops, is killed, freezes and restarts on the same port with its content', async () => {
      const image = await buildDockerImage({ seed: 'restart' });
      await pushImage(upstream.url, 'library/restart', 'v1', image);
      const manifestUrl = `${upstream.url}/v2/library/restart/manifests/v1`;
      const accept = { accept: MEDIA_TYPES.dockerManifest };

      await upstream.kill();
      expect(upstream.running).toBe(false);
      await expect(fetch(manifestUrl, { headers: accept })).rejects.toThrow();

      await upstream.restart();
      const res = await fetch(manifestUrl, { headers: accept });
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(image.digest);
      await res.arrayBuffer();

      upstream.freeze();
      await expect(fetch(manifestUrl, { headers: accept, signal: AbortSignal.timeout(500) })).rejects.toThrow();
      upstream.thaw();

      await upstream.stop();
      await upstream.restart();
      const since = await upstream.mark();
      const again = await fetch(manifestUrl, { method: 'HEAD', headers: accept });
      expect(again.status).toBe(200);
      expect(await upstream.requests(since)).toEqual([
        expect.objectContaining({ method: 'HEAD', kind: 'manifest', repository: 'library/restart', reference: 'v1', status: 200 }),
      ]);
    });
    // podman pulling and unpacking these fixtures is proven through the app in pull.e2e-spec.ts and auth-podman.e2e-spec.ts.
  });
});
