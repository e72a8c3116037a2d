/**
 * Upstream URL validation through the admin API: normalised, http(s) only, and refused when the host is
 * or resolves to a loopback, private or link-local address, unless UPSTREAM_ALLOW_PRIVATE=true or the
 * host is in UPSTREAM_ALLOWLIST. (startTestApp allows private addresses by default; these apps do not.)
 */
import { AdminApi } from './support/admin-api.js';
import { databaseTargets, startTestApp, type TestApp } from './support/test-app.js';

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

    afterAll(async () => {
      await app?.close();
    });

    it('accepts loopback and private addresses', async () => {
      app = await startTestApp({ UPSTREAM_ALLOW_PRIVATE: 'true' }, { database });
      const admin = new AdminApi(app.url);
      const groupId = (await admin.createGroup('private')).id;
      const registryId = (await admin.expect(201, 'POST', `/api/v4/groups/${groupId}/-/virtual_registries/container/registries`, { name: 'r' })).body.id;
      for (const [i, url] of ['http://127.0.0.1:5000', 'http://localhost:5000', 'http://192.168.1.10', 'http://[::1]:5000'].entries()) {
        const res = await admin.post(`/api/v4/virtual_registries/container/registries/${registryId}/upstreams`, { name: `p${i}`, url });
        expect({ url, status: res.status }).toEqual({ url, status: 201 });
      }
    });
  });
});
