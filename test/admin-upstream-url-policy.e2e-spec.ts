/**
 * Upstream URL validation through the admin API: normalised, http(s) only, and refused when the host is
 * or resolves to a loopback, private or link-local address, unless UPSTREAM_ALLOW_PRIVATE=true or the
 * host is in UPSTREAM_ALLOWLIST. (startTestApp allows private addresses by default; these apps do not.)
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AdminApi } from './support/admin-api.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';

/** A plain HTTP server on 127.0.0.1 (a stand-in upstream or token server). */
async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const REFUSED = [
  'http://127.0.0.1:5000',
  'http://127.1.2.3',
  'http://localhost:5000', // a DNS name resolving to 127.0.0.1
  'http://[::1]:5000',
  'http://10.0.0.8',
  'http://172.16.5.4',
  'http://192.168.1.10:8080',
  'http://169.254.169.254', // cloud metadata (link-local)
  'http://[fe80::1]',
  'http://[::ffff:127.0.0.1]',
  'http://0.0.0.0',
  'http://100.64.0.1',
];

describe.each(databaseTargets())('admin API: upstream URL policy (%s database)', (database) => {
  describe('by default (UPSTREAM_ALLOW_PRIVATE=false, no allowlist)', () => {
    let app: TestApp;
    let admin: AdminApi;
    let registryId: number;
    let groupId: number;

    beforeAll(async () => {
      app = await startTestApp({ UPSTREAM_ALLOW_PRIVATE: 'false' }, { database });
      admin = new AdminApi(app.url);
      groupId = (await admin.createGroup('ssrf')).id;
      registryId = (await admin.expect(201, 'POST', `/api/v4/groups/${groupId}/-/virtual_registries/container/registries`, { name: 'r' })).body.id;
    });

    afterAll(async () => {
      await app?.close();
    });

    it.each(REFUSED)('refuses %s on create, update and test', async (url) => {
      const created = await admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, { name: 'x', url });
      expect(created.status).toBe(400);
      expect(created.body.message.url[0]).toMatch(/is blocked/);
      const tested = await admin.post(`/api/v4/groups/${groupId}/-/virtual_registries/container/upstreams/test`, { url });
      expect(tested.status).toBe(400);
    });

    it('accepts a public address, and refuses to move it to a private one', async () => {
      const created = await admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, {
        name: 'public',
        url: 'https://93.184.215.14/v2/',
      });
      expect(created.status).toBe(201);
      expect(created.body.url).toBe('https://93.184.215.14');
      const moved = await admin.patch(`/api/v4/virtual_registries/container/upstreams/${created.body.id}`, { url: 'http://127.0.0.1:5000' });
      expect(moved.status).toBe(400);
      expect((await admin.get(`/api/v4/virtual_registries/container/upstreams/${created.body.id}`)).body.url).toBe('https://93.184.215.14');
      const overridden = await admin.post(`/api/v4/virtual_registries/container/upstreams/${created.body.id}/test`, { url: 'http://10.1.1.1' });
      expect(overridden.status).toBe(400);
    });

    it('says "not a public address", never the private address a name resolved to', async () => {
      const created = await admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, { name: 'x', url: 'http://localhost:5000' });
      expect(created.status).toBe(400);
      expect(created.body.message.url).toEqual([
        'is blocked: the upstream host is not a public address (allow it with UPSTREAM_ALLOW_PRIVATE or UPSTREAM_ALLOWLIST)',
      ]);
      const tested = await admin.post(`/api/v4/groups/${groupId}/-/virtual_registries/container/upstreams/test`, { url: 'http://localhost:5000' });
      expect(tested.status).toBe(400);
      for (const res of [created, tested]) expect(res.text).not.toMatch(/127\.0\.0\.1|::1/);
    });

    it('refuses non-http schemes and hosts that do not resolve', async () => {
      for (const url of ['file:///etc/passwd', 'gopher://example.com', 'http://no-such-host.invalid']) {
        const res = await admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, { name: 'x', url });
        expect({ url, status: res.status }).toEqual({ url, status: 400 });
      }
    });
  });

  describe('with UPSTREAM_ALLOWLIST', () => {
    let app: TestApp;
    let admin: AdminApi;
    let registryId: number;

    beforeAll(async () => {
      app = await startTestApp({ UPSTREAM_ALLOW_PRIVATE: 'false', UPSTREAM_ALLOWLIST: '127.0.0.1:5000,10.0.0.0/8,localhost' }, { database });
      admin = new AdminApi(app.url);
      const groupId = (await admin.createGroup('allowlisted')).id;
      registryId = (await admin.expect(201, 'POST', `/api/v4/groups/${groupId}/-/virtual_registries/container/registries`, { name: 'r' })).body.id;
    });

    afterAll(async () => {
      await app?.close();
    });

    it('accepts allowlisted hosts and networks, and still refuses the rest', async () => {
      const create = (url: string) => admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, { name: url, url });
      expect((await create('http://127.0.0.1:5000')).status).toBe(201);
      expect((await create('http://10.20.30.40')).status).toBe(201);
      expect((await create('http://localhost:6000')).status).toBe(201);
      expect((await create('http://127.0.0.1:5001')).status).toBe(400);
      expect((await create('http://192.168.0.1')).status).toBe(400);
    });
  });

  describe('with UPSTREAM_ALLOW_PRIVATE=true', () => {
    let app: TestApp;

    beforeAll(async () => {
      app = await startTestApp({ UPSTREAM_ALLOW_PRIVATE: 'true' }, { database });
    });

    afterAll(async () => {
      await app?.close();
    });

    it('accepts loopback and private addresses', async () => {
      const admin = new AdminApi(app.url);
      const groupId = (await admin.createGroup('private')).id;
      const registryId = (await admin.expect(201, 'POST', `/api/v4/groups/${groupId}/-/virtual_registries/container/registries`, { name: 'r' })).body.id;
      for (const [i, url] of ['http://127.0.0.1:5000', 'http://localhost:5000', 'http://192.168.1.10', 'http://[::1]:5000'].entries()) {
        const res = await admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, { name: `p${i}`, url });
        expect({ url, status: res.status }).toEqual({ url, status: 201 });
      }
    });

    it('tells an operator testing an upstream what failed, without the addresses or what its token server said', async () => {
      const admin = new AdminApi(app.url);
      const groupId = (await admin.createGroup('tested')).id;
      const tokenServer = await listen((_req, res) => {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"robot$ci has no access to secret-project"}');
      });
      const registry = await listen((_req, res) => {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${tokenServer.url}/token",service="r"` }).end();
      });
      const closed = await listen(() => undefined);
      await closed.close();
      try {
        const test = (url: string) =>
          admin.expect(200, 'POST', `/api/v4/groups/${groupId}/-/virtual_registries/container/upstreams/test`, {
            url,
            username: 'robot$ci',
            password: 's3cret',
          });
        const refused = await test(registry.url);
        expect(refused.body).toEqual({ success: false, result: 'Error: 401 - Unauthorized' });
        const unreachable = await test(closed.url);
        expect(unreachable.body).toEqual({ success: false, result: 'Error: upstream unreachable (ECONNREFUSED)' });
        for (const res of [refused, unreachable]) expect(res.text).not.toMatch(/127\.0\.0\.1|secret-project|s3cret/);
      } finally {
        await Promise.all([tokenServer.close(), registry.close()]);
      }
    });
  });
});
