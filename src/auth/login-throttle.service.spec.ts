import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import type { LimitsConfig, QueueConfig } from '../config/config.js';
import { LoginThrottle, loginThrottleKeys } from './login-throttle.service.js';

const redisUrl = process.env.REDIS_URL || undefined;
const counters: [string, string | undefined][] = [['in-process', undefined]];
if (redisUrl) counters.push(['redis', redisUrl]);
else process.stdout.write('login throttle: the Redis counter is not tested (REDIS_URL is unset)\n');

describe.each(counters)('LoginThrottle (%s counter)', (_name, url) => {
  let throttle: LoginThrottle;
  let now: number;
  let prefix: string;

  beforeEach(() => {
    now = 1_800_000_000_000 + Math.floor(Math.random() * 1e9);
    prefix = `test-${now}-`;
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    throttle = new LoginThrottle({ loginFailuresPerMinute: 3 } as LimitsConfig, { redisUrl: url } as QueueConfig);
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await throttle.onModuleDestroy();
  });

  it('allows LOGIN_FAILURES_PER_MINUTE failures per key in a sliding minute, then asks to retry later', async () => {
    const keys = [`${prefix}ip`];
    for (let i = 0; i < 3; i++) {
      expect(await throttle.retryAfterSeconds(keys)).toBe(0);
      await throttle.recordFailure(keys);
      now += 10_000;
    }
    // failures at t=0, 10 s, 20 s; now t=30 s: blocked until the first leaves the window at t=60 s
    expect(await throttle.retryAfterSeconds(keys)).toBe(30);
    now += 29_000;
    expect(await throttle.retryAfterSeconds(keys)).toBe(1);
    now += 1_000;
    expect(await throttle.retryAfterSeconds(keys)).toBe(0);
    await throttle.recordFailure(keys);
    // t=60 s: failures at 10, 20, 60 s: blocked until 70 s
    expect(await throttle.retryAfterSeconds(keys)).toBe(10);
  });

  it('blocks when any of the keys is over the limit, and keys are independent', async () => {
    const ip = `${prefix}ip`;
    const user = `${prefix}user`;
    for (let i = 0; i < 3; i++) await throttle.recordFailure([user]);
    expect(await throttle.retryAfterSeconds([ip])).toBe(0);
    expect(await throttle.retryAfterSeconds([ip, user])).toBe(60);
  });

  it('names the IP and the username, case-insensitively', () => {
    expect(loginThrottleKeys('10.0.0.1', 'Alice')).toEqual(['ip:10.0.0.1', 'user:alice']);
    expect(loginThrottleKeys('10.0.0.1', undefined)).toEqual(['ip:10.0.0.1']);
  });

  if (url) {
    it('shares the count between replicas through Redis', async () => {
      const other = new LoginThrottle({ loginFailuresPerMinute: 3 } as LimitsConfig, { redisUrl: url } as QueueConfig);
      try {
        const keys = [`${prefix}shared`];
        await throttle.recordFailure(keys);
        await other.recordFailure(keys);
        expect(await other.retryAfterSeconds(keys)).toBe(0);
        await throttle.recordFailure(keys);
        expect(await other.retryAfterSeconds(keys)).toBe(60);
      } finally {
        await other.onModuleDestroy();
        const redis = new Redis(url);
        const stale = await redis.keys(`cvr:login-failures:${prefix}*`);
        if (stale.length) await redis.del(...stale);
        redis.disconnect();
      }
    });
  }
});
