/**
 * A real client against the token flow: `podman login` to a virtual registry with a personal access
 * token (and a deploy token) succeeds, fails with a wrong token, and a logged-in podman pulls through it.
 * Uses a temporary --authfile and podman storage, never the machine's own.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AdminApi } from './support/admin-api.js';
import { buildDockerImage, pushImage } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';

const exec = promisify(execFile);
const canRun = realServices.hasBinary('podman') && realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: podman or docker-registry is not installed; bash .ci/install-packages.sh)';

suite(`podman login and pull${reason}`, () => {
  let app: TestApp;
  let upstream: UpstreamRegistry;
  let work: string;
  let authfile: string;
  let registryRef: string;
  let user: { username: string; token: string };
  let deployToken: { username: string; token: string };

  const podman = (args: string[]) =>
    exec('podman', ['--root', join(work, 'storage'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs', ...args], {
      timeout: 120_000,
      env: { ...process.env, REGISTRY_AUTH_FILE: authfile, XDG_RUNTIME_DIR: join(work, 'run') },
    });

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'cvr-podman-'));
    authfile = join(work, 'auth.json');
    upstream = await startUpstreamRegistry();
    await pushImage(upstream.url, 'library/alpine', 'latest', await buildDockerImage({ seed: 'podman-login' }));
    app = await startTestApp();
    const admin = new AdminApi(app.url);
    const group = await admin.createGroup('podman');
    const registry = (await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'podman' })).body;
    await admin.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, { name: 'local', url: upstream.url });
    registryRef = `${new URL(app.url).host}/virtual_registries/containers/${registry.id}`;
    user = { username: 'podman-user', token: await admin.createUserToken('podman-user', { groupId: group.id, role: 'guest' }, ['read_virtual_registry']) };
    const dt = (await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/deploy_tokens`, { name: 'podman', scopes: ['read_virtual_registry'] })).body;
    deployToken = { username: dt.username, token: dt.token };
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await upstream?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('logs in with a personal access token', async () => {
    const { stdout } = await podman(['login', '--tls-verify=false', '--authfile', authfile, '-u', user.username, '-p', user.token, registryRef]);
    expect(stdout).toContain('Login Succeeded');
    expect(readFileSync(authfile, 'utf8')).toContain(registryRef);
  });

  it('fails to log in with a wrong token, and the wrong credentials are not stored', async () => {
    const wrongAuthfile = join(work, 'wrong.json');
    const attempt = podman(['login', '--tls-verify=false', '--authfile', wrongAuthfile, '-u', user.username, '-p', `${user.token}x`, registryRef]);
    await expect(attempt).rejects.toMatchObject({ stderr: expect.stringMatching(/401|unauthorized|invalid username\/password/i) });
    expect(() => readFileSync(wrongAuthfile, 'utf8')).toThrow();
  });

  it('logs in with a deploy token and pulls through the virtual registry', async () => {
    const { stdout } = await podman(['login', '--tls-verify=false', '--authfile', authfile, '-u', deployToken.username, '-p', deployToken.token, registryRef]);
    expect(stdout).toContain('Login Succeeded');
    await podman(['pull', '--tls-verify=false', '--authfile', authfile, `${registryRef}/library/alpine:latest`]);
    const { stdout: images } = await podman(['images', '--format', '{{.Repository}}:{{.Tag}}']);
    expect(images).toContain(`${registryRef}/library/alpine:latest`);
  });
});
