/**
 * Brute-force protection of the registry login. Failed HTTP Basic and OAuth2 logins are counted per
 * client address and per (client address, username), never per username alone (LOGIN_FAILURES_PER_MINUTE
 * = 3 here, so a pair is refused after 3 failures and an address after 15), answered 429 with Retry-After
 * and an OCI TOOMANYREQUESTS body. Requests come from distinct loopback addresses (127.0.0.x), or through
 * a "proxy" with X-Forwarded-For, which counts only when TRUST_PROXY trusts the peer.
 * In-process counters always; the Redis counters too when REDIS_URL is set.
 */
import { request } from 'node:http';
import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import { AdminApi } from './support/admin-api.js';
import { startTestApp, type TestApp } from './support/test-app.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

interface TokenRequest {
  authorization?: string;
  form?: Record<string, string>;
  /** Sent as X-Forwarded-For. */
  forwardedFor?: string;
}

/** A token request sent from `localAddress` (a 127.0.0.0/8 address), so the app's peer is that address. */
function fromAddress(app: TestApp, localAddress: string, init: TokenRequest): Promise<Answer> {
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
          ...(init.forwardedFor ? { 'x-forwarded-for': init.forwardedFor } : {}),
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
const wrong = (i: number) => `cvrpat-guess-${i}-xxxxxxxxxxxxxxxxxxxxxxxx`;

/** Runs `fn` with the clock `seconds` ahead (the counters read Date.now), as if that time had passed. */
async function later<T>(seconds: number, fn: () => Promise<T>): Promise<T> {
  const realNow = Date.now.bind(Date);
  const spy = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + seconds * 1000);
  try {
    return await fn();
  } finally {
    spy.mockRestore();
  }
}

const counters: [string, string | undefined][] = [['in-process', undefined]];
if (process.env.REDIS_URL) counters.push(['redis', process.env.REDIS_URL]);
else process.stdout.write('login throttle e2e: Redis counters not tested (REDIS_URL is unset)\n');

const clearRedis = async (redisUrl: string | undefined) => {
  if (!redisUrl) return;
  const redis = new Redis(redisUrl);
  const keys = await redis.keys('cvr:login-failures:*');
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
};

describe.each(counters)('failed registry logins are rate limited (%s counters)', (_name, redisUrl) => {
  let app: TestApp;
  let admin: AdminApi;
  let victim: string;
  let bystander: string;

  beforeAll(async () => {
    await clearRedis(redisUrl);
    app = await startTestApp({ LOGIN_FAILURES_PER_MINUTE: '3', ...(redisUrl ? { REDIS_URL: redisUrl } : {}) });
    admin = new AdminApi(app.url);
    victim = await admin.createUserToken('victim', undefined, ['read_virtual_registry']);
    bystander = await admin.createUserToken('bystander', undefined, ['read_virtual_registry']);
  });
  afterAll(async () => {
    await app?.close();
    await clearRedis(redisUrl);
  });

  it('does not count successful logins', async () => {
    for (let i = 0; i < 6; i++) {
      expect((await fromAddress(app, '127.0.0.5', { authorization: basic('bystander', bystander) })).status).toBe(200);
    }
  });

  it('never locks a user out because of failures from another address: 50 bad logins, then the right token works', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) statuses.push((await fromAddress(app, '127.0.0.2', { authorization: basic('victim', wrong(i)) })).status);
    // three failures are checked and counted; then the pair (127.0.0.2, victim) is refused unchecked
    expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
    expect(new Set(statuses.slice(3))).toEqual(new Set([429]));

    // another address: the right credentials get a token, by HTTP Basic and by the OAuth2 form
    const elsewhere = await fromAddress(app, '127.0.0.3', { authorization: basic('VICTIM', victim) });
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.body.token).toEqual(expect.any(String));
    expect((await fromAddress(app, '127.0.0.3', { form: { grant_type: 'password', username: 'victim', password: victim } })).status).toBe(200);

    // the same address: that username is refused until the counted failures leave the minute...
    const blocked = await fromAddress(app, '127.0.0.2', { authorization: basic('victim', victim) });
    expect(blocked.status).toBe(429);
    expect(blocked.body).toEqual({ errors: [{ code: 'TOOMANYREQUESTS', message: expect.any(String), detail: null }] });
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((await fromAddress(app, '127.0.0.2', { form: { grant_type: 'password', username: 'victim', password: victim } })).status).toBe(429);
    // ...while other usernames from that address are not affected (3 failures are far from the address limit)
    expect((await fromAddress(app, '127.0.0.2', { authorization: basic('bystander', bystander) })).status).toBe(200);
    // Retry-After seconds later, the same address gets a token too
    const afterwards = await later(retryAfter, () => fromAddress(app, '127.0.0.2', { authorization: basic('victim', victim) }));
    expect(afterwards.status).toBe(200);
  });

  it('refuses an address for every username after five times the limit of failures, whatever the usernames', async () => {
    for (let i = 0; i < 14; i++) {
      const res = await fromAddress(app, '127.0.0.4', { authorization: basic(`guess-${i}`, 'cvrpat-nope-nope-nope-nope-nope') });
      expect(res.status).toBe(401);
    }
    expect((await fromAddress(app, '127.0.0.4', { form: { grant_type: 'refresh_token', refresh_token: 'x' } })).status).toBe(401);
    const blocked = await fromAddress(app, '127.0.0.4', { authorization: basic('bystander', bystander) });
    expect(blocked.status).toBe(429);
    expect(blocked.headers['retry-after']).toBeDefined();
    expect((await fromAddress(app, '127.0.0.4', { form: { grant_type: 'refresh_token', refresh_token: 'x' } })).status).toBe(429);
    expect((await fromAddress(app, '127.0.0.6', { authorization: basic('bystander', bystander) })).status).toBe(200);
  });
});

describe('TRUST_PROXY decides whether X-Forwarded-For names the client', () => {
  const apps: TestApp[] = [];
  const start = async (trustProxy?: string) => {
    const app = await startTestApp({ LOGIN_FAILURES_PER_MINUTE: '3', ...(trustProxy ? { TRUST_PROXY: trustProxy } : {}) });
    apps.push(app);
    const token = await new AdminApi(app.url).createUserToken('victim', undefined, ['read_virtual_registry']);
    /** Three failures for victim from `peer` claiming to forward `failedFor`, then the right token claiming `clientAfter`. */
    return async (peer: string, failedFor: string, clientAfter: string): Promise<number> => {
      for (let i = 0; i < 3; i++) {
        expect((await fromAddress(app, peer, { authorization: basic('victim', wrong(i)), forwardedFor: failedFor })).status).toBe(401);
      }
      return (await fromAddress(app, peer, { authorization: basic('victim', token), forwardedFor: clientAfter })).status;
    };
  };
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  it('ignores X-Forwarded-For by default: everyone behind one peer is one client', async () => {
    const attempt = await start();
    expect(await attempt('127.0.0.7', '203.0.113.1', '203.0.113.2')).toBe(429);
  });

  it('believes X-Forwarded-For from a trusted proxy address, and only from it', async () => {
    const attempt = await start('127.0.0.7, 10.0.0.0/8');
    expect(await attempt('127.0.0.7', '203.0.113.1', '203.0.113.2')).toBe(200);
    expect(await attempt('127.0.0.7', '203.0.113.3', '203.0.113.3')).toBe(429);
    // an untrusted peer cannot spoof its way out: its failures count against its own address
    expect(await attempt('127.0.0.8', '198.51.100.1', '198.51.100.2')).toBe(429);
  });

  it('believes the nearest hop with a hop count', async () => {
    const attempt = await start('1');
    expect(await attempt('127.0.0.9', '192.0.2.1, 203.0.113.1', '192.0.2.1, 203.0.113.2')).toBe(200);
    expect(await attempt('127.0.0.9', '203.0.113.4', '192.0.2.99, 203.0.113.4')).toBe(429);
  });
});
