/**
 * Brute-force protection of the registry login: failed HTTP Basic and OAuth2 password logins are limited
 * per client IP and per username (LOGIN_FAILURES_PER_MINUTE), answered 429 with Retry-After and an OCI
 * TOOMANYREQUESTS body. Requests come from distinct loopback addresses (127.0.0.x) to tell the two apart.
 * In-process counters always; the Redis counters too when REDIS_URL is set.
 */
import { request } from 'node:http';
import { Redis } from 'ioredis';
import { AdminApi } from './support/admin-api.js';
import { startTestApp, type TestApp } from './support/test-app.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** A token request sent from `localAddress` (a 127.0.0.0/8 address), so the app sees that client IP. */
function fromAddress(app: TestApp, localAddress: string, init: { authorization?: string; form?: Record<string, string> }): Promise<Answer> {
  const url = new URL(`${app.url}/jwt/auth?service=virtual_registry`);
  const body = init.form ? new URLSearchParams(init.form).toString() : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: body ? 'POST' : 'GET',
        localAddress,
        headers: {
          ...(init.authorization ? { authorization: init.authorization } : {}),
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

const counters: [string, string | undefined][] = [['in-process', undefined]];
if (process.env.REDIS_URL) counters.push(['redis', process.env.REDIS_URL]);
else process.stdout.write('login throttle e2e: Redis counters not tested (REDIS_URL is unset)\n');

describe.each(counters)('failed registry logins are rate limited (%s counters)', (_name, redisUrl) => {
  let app: TestApp;
  let admin: AdminApi;
  let victim: string;
  let bystander: string;

  const clearRedis = async () => {
    if (!redisUrl) return;
    const redis = new Redis(redisUrl);
    const keys = await redis.keys('cvr:login-failures:*');
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  };

  beforeAll(async () => {
    await clearRedis();
    app = await startTestApp({ LOGIN_FAILURES_PER_MINUTE: '3', ...(redisUrl ? { REDIS_URL: redisUrl } : {}) });
    admin = new AdminApi(app.url);
    victim = await admin.createUserToken('victim', undefined, ['read_virtual_registry']);
    bystander = await admin.createUserToken('bystander', undefined, ['read_virtual_registry']);
  });
  afterAll(async () => {
    await app?.close();
    await clearRedis();
  });

  it('does not count successful logins', async () => {
    for (let i = 0; i < 6; i++) {
      expect((await fromAddress(app, '127.0.0.5', { authorization: basic('bystander', bystander) })).status).toBe(200);
    }
  });

  it('blocks a username after too many failures, from any address, even with the right token', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await fromAddress(app, '127.0.0.2', { authorization: basic('victim', `cvrpat-guess-${i}-xxxxxxxxxxxxxxxx`) })).status).toBe(401);
    }
    const blocked = await fromAddress(app, '127.0.0.3', { authorization: basic('VICTIM', victim) });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(blocked.body).toEqual({ errors: [{ code: 'TOOMANYREQUESTS', message: expect.any(String), detail: null }] });
    const viaForm = await fromAddress(app, '127.0.0.3', { form: { grant_type: 'password', username: 'victim', password: victim } });
    expect(viaForm.status).toBe(429);
    // other users from that address are not affected
    expect((await fromAddress(app, '127.0.0.3', { authorization: basic('bystander', bystander) })).status).toBe(200);
  });

  it('blocks an address after too many failures, whatever the username', async () => {
    for (const name of ['guess-a', 'guess-b']) {
      expect((await fromAddress(app, '127.0.0.4', { authorization: basic(name, 'cvrpat-nope-nope-nope-nope-nope') })).status).toBe(401);
    }
    expect((await fromAddress(app, '127.0.0.4', { form: { grant_type: 'password', username: 'guess-c', password: 'cvrpat-nope-nope-nope-nope' } })).status).toBe(401);
    const blocked = await fromAddress(app, '127.0.0.4', { authorization: basic('bystander', bystander) });
    expect(blocked.status).toBe(429);
    expect(blocked.headers['retry-after']).toBeDefined();
    expect((await fromAddress(app, '127.0.0.4', { form: { grant_type: 'refresh_token', refresh_token: 'x' } })).status).toBe(429);
    expect((await fromAddress(app, '127.0.0.6', { authorization: basic('bystander', bystander) })).status).toBe(200);
  });
});
