/**
 * Mirror mode with real clients (issue 14): containerd (its own daemon, `ctr images pull --hosts-dir`)
 * through a `_default` mirror with credentials and anonymously, refused for a host no upstream serves,
 * and through a `docker.io` hosts.toml; podman with a registries.conf mirror pulling a short name; skopeo
 * at the root `/v2/<name>`; curl on Docker's `registry-mirrors` form. Two real upstream registries: "hub"
 * declares it mirrors docker.io, "ghcr" serves only its own host (`127.0.0.1:<port>`).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AdminApi } from './support/admin-api.js';
import { startContainerd, type Containerd } from './support/containerd.js';
import { buildDockerImage, pushImage, type PushedImage } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, type VirtualRegistry } from './support/virtual-registry.js';

const exec = promisify(execFile);
const binaries = ['docker-registry', 'containerd', 'ctr', 'podman', 'skopeo', 'curl'];
const missing = binaries.filter((b) => !realServices.hasBinary(b));
const canRun = missing.length === 0 && process.getuid?.() === 0;
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ` (skipped: needs root and ${binaries.join(', ')}; missing: ${missing.join(', ') || 'root'}; bash .ci/install-packages.sh)`;

suite(`mirror mode with real clients${reason}`, () => {
  let app: TestApp;
  let hub: UpstreamRegistry;
  let ghcr: UpstreamRegistry;
  let containerd: Containerd;
  let vr: VirtualRegistry; // registry 1, MIRROR_DEFAULT_REGISTRY: [hub (mirrors docker.io), ghcr]
  let anon: VirtualRegistry; // registry 2: [ghcr], anonymous pulls on
  let alpine: PushedImage; // docker.io/library/alpine:latest on hub
  let small: PushedImage; // <ghcr host>/bench/small:1
  let work: string;
  let appHost: string;

  const creds = () => `${vr.pullUser.username}:${vr.pullUser.token}`;
  /** A `_default` (or per-host) hosts.toml sending every pull to `path` on the app; the origin itself is a dead address. */
  const mirrorHosts = (name: string, host: string, registryId: number) =>
    containerd.hostsDir(
      name,
      host,
      [
        'server = "http://127.0.0.1:9"',
        `[host."http://${appHost}/v2/virtual_registries/containers/${registryId}"]`,
        '  capabilities = ["pull", "resolve"]',
        '  override_path = true',
        '',
      ].join('\n'),
    );
  const imageDigest = async (ref: string) => {
    const { stdout } = await containerd.ctr(['images', 'ls']);
    const line = stdout.split('\n').find((l) => l.startsWith(`${ref} `));
    return line?.split(/\s+/).find((field) => field.startsWith('sha256:'));
  };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'cvr-mirror-clients-'));
    [hub, ghcr, containerd] = await Promise.all([startUpstreamRegistry(), startUpstreamRegistry(), startContainerd()]);
    alpine = await pushImage(hub.url, 'library/alpine', 'latest', await buildDockerImage({ seed: 'mirror-clients-alpine' }));
    small = await pushImage(ghcr.url, 'bench/small', '1', await buildDockerImage({ seed: 'mirror-clients-small' }));
    app = await startTestApp({ MIRROR_DEFAULT_REGISTRY: '1' });
    appHost = new URL(app.url).host;
    vr = await createVirtualRegistry(app, [{ url: hub.url, mirrorHosts: ['docker.io'] }, { url: ghcr.url }]);
    anon = await createVirtualRegistry(app, [{ url: ghcr.url }]);
    expect([vr.registryId, anon.registryId]).toEqual([1, 2]);
    await new AdminApi(app.url).expect(200, 'PATCH', `/api/v4/virtual_registries/container/registries/${anon.registryId}`, { anonymous_pull: true });
  }, 120_000);

  afterAll(async () => {
    await containerd?.close();
    await app?.close();
    await Promise.all([hub?.close(), ghcr?.close()]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describe('containerd (ctr images pull --hosts-dir)', () => {
    it("pulls an image of the upstream's host through a _default mirror, with credentials (containerd sends ?ns=)", async () => {
      const hostsDir = mirrorHosts('default-creds', '_default', vr.registryId);
      const ref = `${ghcr.host}/bench/small:1`;
      await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, '--user', creds(), ref]);
      expect(await imageDigest(ref)).toBe(small.manifestDigest);
      // it came through the app (the origin named in the ref is never contacted: the app asked ghcr, with ns)
      expect((await ghcr.requests()).some((r) => r.kind === 'manifest' && r.repository === 'bench/small')).toBe(true);
    });

    it('pulls anonymously from a registry that allows it, and not from one that does not', async () => {
      await containerd.ctr(['images', 'rm', `${ghcr.host}/bench/small:1`]);
      const ref = `${ghcr.host}/bench/small:1`;
      await containerd.ctr(['images', 'pull', '--hosts-dir', mirrorHosts('default-anon', '_default', anon.registryId), ref]);
      expect(await imageDigest(ref)).toBe(small.manifestDigest);
      await containerd.ctr(['images', 'rm', ref]);
      const refused = containerd.ctr(['images', 'pull', '--hosts-dir', mirrorHosts('default-creds', '_default', vr.registryId), ref]);
      await expect(refused).rejects.toMatchObject({ stderr: expect.stringMatching(/401|unauthorized/i) });
    });

    it('refuses an image of a host no upstream serves with 404, never asking another upstream', async () => {
      await Promise.all([hub.reset(), ghcr.reset()]);
      const ref = 'gcr.io/bench/small:1';
      const refused = containerd.ctr(['images', 'pull', '--hosts-dir', mirrorHosts('default-creds', '_default', vr.registryId), '--user', creds(), ref]);
      // the mirror answered 404 (then containerd tried the dead origin address of the hosts.toml)
      const escapedHost = appHost.replace(/[.]/g, '\\.');
      await expect(refused).rejects.toMatchObject({ stderr: expect.stringMatching(new RegExp(`response was http\\.StatusNotFound" host="${escapedHost}"`)) });
      expect(await hub.requests()).toEqual([]);
      expect(await ghcr.requests()).toEqual([]);
      expect(await imageDigest(ref)).toBeUndefined();
    });

    it('pulls docker.io/library/alpine through a docker.io hosts.toml from the upstream that declares it mirrors docker.io', async () => {
      const ref = 'docker.io/library/alpine:latest';
      await containerd.ctr(['images', 'pull', '--hosts-dir', mirrorHosts('hub', 'docker.io', vr.registryId), '--user', creds(), ref]);
      expect(await imageDigest(ref)).toBe(alpine.manifestDigest);
    });
  });

  it("podman pulls a short name through a registries.conf mirror with the registry's path", async () => {
    const conf = join(work, 'registries.conf');
    writeFileSync(
      conf,
      [
        'unqualified-search-registries = ["docker.io"]',
        'short-name-mode = "permissive"',
        '[[registry]]',
        'prefix = "docker.io"',
        'location = "docker.io"',
        '[[registry.mirror]]',
        `location = "${appHost}/virtual_registries/containers/${vr.registryId}"`,
        'insecure = true',
        '',
      ].join('\n'),
    );
    const podman = (args: string[]) =>
      exec('podman', ['--root', join(work, 'storage'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs', ...args], {
        timeout: 120_000,
        env: { ...process.env, CONTAINERS_REGISTRIES_CONF: conf, REGISTRY_AUTH_FILE: join(work, 'auth.json'), XDG_RUNTIME_DIR: join(work, 'run') },
      });
    writeFileSync(join(work, 'auth.json'), '{"auths":{}}');
    await podman(['login', '--tls-verify=false', '-u', vr.pullUser.username, '-p', vr.pullUser.token, vr.imagePrefix]);
    // only the hub upstream has this content under docker.io/library/alpine: the digest proves the mirror served it
    await podman(['pull', 'alpine']);
    const { stdout } = await podman(['images', '--format', '{{.Repository}}:{{.Tag}} {{.Digest}}']);
    expect(stdout).toContain(`docker.io/library/alpine:latest ${alpine.manifestDigest}`);
  });

  describe('skopeo and curl', () => {
    const skopeoDir = (name: string) => join(work, name);
    const skopeoCopy = (ref: string, dir: string, extra: string[] = []) =>
      exec('skopeo', ['copy', '--src-tls-verify=false', ...extra, `docker://${ref}`, `dir:${dir}`], { timeout: 120_000 });
    const curl = async (path: string, args: string[] = []) => {
      const { stdout } = await exec('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', ...args, `${app.url}${path}`], {
        encoding: 'buffer',
        maxBuffer: 64 * 1024 * 1024,
      });
      const text = stdout as unknown as Buffer;
      const cut = text.lastIndexOf(0x0a);
      return { status: Number(text.subarray(cut + 1).toString()), body: text.subarray(0, cut) };
    };

    it('copies from the root /v2/<name> (MIRROR_DEFAULT_REGISTRY) the same image as from the prefixed route', async () => {
      await skopeoCopy(`${appHost}/bench/small:1`, skopeoDir('root'), ['--src-creds', creds()]);
      await skopeoCopy(`${vr.imagePrefix}/bench/small:1`, skopeoDir('prefixed'), ['--src-creds', creds()]);
      expect(readFileSync(join(skopeoDir('root'), 'manifest.json'))).toEqual(small.manifestBytes);
      for (const blob of small.blobs) {
        const file = blob.digest.replace(/^sha256:/, '');
        expect(readFileSync(join(skopeoDir('root'), file))).toEqual(readFileSync(join(skopeoDir('prefixed'), file)));
      }
    });

    it('curl on the registry-mirrors form: the challenge, then manifests and blobs byte-identical to what skopeo got from the prefixed route', async () => {
      const ping = await exec('curl', ['-s', '-D', '-', '-o', '/dev/null', `${app.url}/virtual_registries/containers/${vr.registryId}/v2/`]);
      expect(ping.stdout).toMatch(/^HTTP\/1\.1 401/);
      expect(ping.stdout).toContain(`www-authenticate: Bearer realm="${app.url}/jwt/auth?registry=${vr.registryId}",service="virtual_registry"`);
      const token = await curl(`/jwt/auth?service=virtual_registry&registry=${vr.registryId}&scope=repository:bench/small:pull`, ['-u', creds()]);
      expect(token.status).toBe(200);
      const bearer = ['-H', `Authorization: Bearer ${(JSON.parse(token.body.toString()) as { token: string }).token}`];
      const base = `/virtual_registries/containers/${vr.registryId}/v2/bench/small`;
      const manifest = await curl(`${base}/manifests/1?ns=${ghcr.host}`, [...bearer, '-H', 'Accept: application/vnd.docker.distribution.manifest.v2+json']);
      expect(manifest.status).toBe(200);
      expect(manifest.body).toEqual(readFileSync(join(skopeoDir('prefixed'), 'manifest.json')));
      for (const blob of small.blobs) {
        const got = await curl(`${base}/blobs/${blob.digest}`, bearer);
        expect(got.status).toBe(200);
        expect(got.body).toEqual(readFileSync(join(skopeoDir('prefixed'), blob.digest.replace(/^sha256:/, ''))));
      }
    });

    it('anonymous pulls off: every new route answers 401 to curl and skopeo without credentials', async () => {
      for (const path of [
        '/v2/',
        `/virtual_registries/containers/${vr.registryId}/v2/`,
        `/virtual_registries/containers/${vr.registryId}/v2/bench/small/manifests/1`,
        `/virtual_registries/containers/${vr.registryId}/v2/bench/small/blobs/${small.blobs[0].digest}`,
        `/v2/virtual_registries/containers/${vr.registryId}/bench/small/manifests/1?ns=${ghcr.host}`,
        '/v2/bench/small/manifests/1',
        `/v2/bench/small/blobs/${small.blobs[0].digest}`,
        '/v2/bench/small/tags/list',
      ]) {
        expect(`${path} ${(await curl(path)).status}`).toBe(`${path} 401`);
        expect(`HEAD ${path} ${(await curl(path, ['-I'])).status}`).toBe(`HEAD ${path} 401`);
      }
      await expect(skopeoCopy(`${appHost}/bench/small:1`, skopeoDir('anonymous'))).rejects.toMatchObject({
        stderr: expect.stringMatching(/401|unauthorized|authentication required/i),
      });
    });
  });
});
