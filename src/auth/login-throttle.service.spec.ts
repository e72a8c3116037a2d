import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import type { LimitsConfig } from '../config/config.js';
import { RedisConnections } from '../redis/redis-connections.js';
import { clientAddressKey, LoginThrottle, loginThrottleCounters } from './login-throttle.service.js';

const redisUrl = process.env.REDIS_URL || undefined;
const counters: [string, string | undefined][] = [['in-process', undefined]];
if (redisUrl) counters.push(['redis', redisUrl]);
else process.stdout.write('login throttle: the Redis counter is not tested (REDIS_URL is unset)\n');

describe.each(counters)('LoginThrottle (%s counter)', (_name, url) => {
  let throttle: LoginThrottle;
  let now: number;
  let prefix: string;
  /** A random 10.x.y.0/24 per test, so Redis counters of other tests and runs never mix in. */
  let net: string;
  let redis: RedisConnections;

  beforeEach(() => {
    now = 1_800_000_000_000 + Math.floor(Math.random() * 1e9);
    prefix = `test-${now}-`;
    net = `10.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}`;
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    redis = new RedisConnections(url);
    throttle = new LoginThrottle({ loginFailuresPerMinute: 3 } as LimitsConfig, redis);
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await throttle.onModuleDestroy();
    await redis.close();
  });

  it('allows LOGIN_FAILURES_PER_MINUTE failures per (address, username) in a sliding minute, then asks to retry later', async () => {
    const attempt = { address: `${net}.1`, username: `${prefix}alice` };
    for (let i = 0; i < 3; i++) {
      expect(await throttle.retryAfterSeconds(attempt)).toBe(0);
      await throttle.recordFailure(attempt);
      now += 10_000;
    }
    // failures at t=0, 10 s, 20 s; now t=30 s: blocked until the first leaves the window at t=60 s
    expect(await throttle.retryAfterSeconds(attempt)).toBe(30);
    now += 29_000;
    expect(await throttle.retryAfterSeconds(attempt)).toBe(1);
    now += 1_000;
    expect(await throttle.retryAfterSeconds(attempt)).toBe(0);
    await throttle.recordFailure(attempt);
    // t=60 s: failures at 10, 20, 60 s: blocked until 70 s
    expect(await throttle.retryAfterSeconds(attempt)).toBe(10);
  });

  it('never blocks a username from another address, nor other usernames from the same address', async () => {
    const victim = `${prefix}victim`;
    for (let i = 0; i < 3; i++) await throttle.recordFailure({ address: `${net}.1`, username: victim });
    expect(await throttle.retryAfterSeconds({ address: `${net}.1`, username: victim.toUpperCase() })).toBe(60);
    expect(await throttle.retryAfterSeconds({ address: `${net}.2`, username: victim })).toBe(0);
    expect(await throttle.retryAfterSeconds({ address: `${net}.1`, username: `${prefix}other` })).toBe(0);
  });

  it('blocks an address for every username after five times the limit, whatever the usernames', async () => {
    const address = `${net}.3`;
    for (let i = 0; i < 14; i++) await throttle.recordFailure({ address, username: `${prefix}guess-${i}` });
    expect(await throttle.retryAfterSeconds({ address, username: `${prefix}fresh` })).toBe(0);
    await throttle.recordFailure({ address });
    expect(await throttle.retryAfterSeconds({ address, username: `${prefix}fresh` })).toBe(60);
    expect(await throttle.retryAfterSeconds({ address })).toBe(60);
    expect(await throttle.retryAfterSeconds({ address: `${net}.4`, username: `${prefix}fresh` })).toBe(0);
  });

  it('attempt() checks only unrefused attempts and counts only failures', async () => {
    const attempt = { address: `${net}.5`, username: `${prefix}bob` };
    let checks = 0;
    const wrong = async () => (checks++, null);
    expect(await throttle.attempt(attempt, async () => 'bob')).toEqual({ kind: 'ok', value: 'bob' });
    for (let i = 0; i < 3; i++) expect(await throttle.attempt(attempt, wrong)).toEqual({ kind: 'failed' });
    expect(await throttle.attempt(attempt, wrong)).toEqual({ kind: 'throttled', retryAfterSeconds: 60 });
    expect(checks).toBe(3);
  });

  it('counts an IPv4 client as itself (mapped or not) and an IPv6 client by its /64', () => {
    expect(clientAddressKey('10.0.0.1')).toBe('10.0.0.1');
    expect(clientAddressKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(clientAddressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientAddressKey('2001:db8:1:2:bbbb::9')).toBe('2001:db8:1:2::/64');
    expect(loginThrottleCounters({ address: '::ffff:10.0.0.1', username: 'Alice' }, 10)).toEqual([
      { key: 'ip:10.0.0.1', limit: 50 },
      { key: 'ip-user:10.0.0.1:alice', limit: 10 },
    ]);
    expect(loginThrottleCounters({ address: '10.0.0.1' }, 10)).toEqual([{ key: 'ip:10.0.0.1', limit: 50 }]);
  });

  if (url) {
    it('shares the count between replicas through Redis', async () => {
      const otherRedis = new RedisConnections(url);
      const other = new LoginThrottle({ loginFailuresPerMinute: 3 } as LimitsConfig, otherRedis);
      try {
        const attempt = { address: `${net}.9`, username: `${prefix}shared` };
        await throttle.recordFailure(attempt);
        await other.recordFailure(attempt);
        expect(await other.retryAfterSeconds(attempt)).toBe(0);
        await throttle.recordFailure(attempt);
        expect(await other.retryAfterSeconds(attempt)).toBe(60);
      } finally {
        await other.onModuleDestroy();
        await otherRedis.close();
        const cleanup = new Redis(url);
        const stale = await cleanup.keys(`cvr:login-failures:*${prefix}*`);
        if (stale.length) await cleanup.del(...stale);
        cleanup.disconnect();
      }
    });
  }
});
