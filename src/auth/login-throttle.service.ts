import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { Redis } from 'ioredis';
import { limitsConfig, queueConfig } from '../config/config.js';
import type { LimitsConfig, QueueConfig } from '../config/config.js';

export const LOGIN_FAILURE_WINDOW_MS = 60_000;

/** The counters one failed login adds to: the client address and the username tried. */
export function loginThrottleKeys(ip: string, username: string | undefined): string[] {
  const keys = [`ip:${ip}`];
  if (username) keys.push(`user:${username.toLowerCase().slice(0, 255)}`);
  return keys;
}

/** Sliding-window failure counters, per key. */
interface FailureCounter {
  /** Milliseconds until `key` may try again (0 = now), given at most `limit` failures per window. */
  retryAfterMs(key: string, limit: number, now: number): Promise<number>;
  record(key: string, limit: number, now: number): Promise<void>;
  close(): Promise<void>;
}

/** Per process: with several replicas, each allows LOGIN_FAILURES_PER_MINUTE (use Redis to share the count). */
class MemoryFailureCounter implements FailureCounter {
  private readonly failures = new Map<string, number[]>();
  private readonly sweeper = setInterval(() => this.sweep(Date.now()), LOGIN_FAILURE_WINDOW_MS).unref();

  async retryAfterMs(key: string, limit: number, now: number): Promise<number> {
    const recent = this.recent(key, now);
    return recent.length >= limit ? recent[recent.length - limit] + LOGIN_FAILURE_WINDOW_MS - now : 0;
  }

  async record(key: string, limit: number, now: number): Promise<void> {
    const recent = this.recent(key, now);
    recent.push(now);
    // Only the newest `limit` failures decide when the key may try again.
    this.failures.set(key, recent.slice(-limit));
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => t > now - LOGIN_FAILURE_WINDOW_MS);
  }

  private sweep(now: number): void {
    for (const [key, times] of this.failures) {
      if (!times.some((t) => t > now - LOGIN_FAILURE_WINDOW_MS)) this.failures.delete(key);
    }
  }
}

/** Shared by every replica: one sorted set of failure times per key, expiring with the window. */
class RedisFailureCounter implements FailureCounter {
  constructor(private readonly redis: Redis) {}

  async retryAfterMs(key: string, limit: number, now: number): Promise<number> {
    const name = this.name(key);
    const [, countResult, rangeResult] = (await this.redis
      .multi()
      .zremrangebyscore(name, '-inf', now - LOGIN_FAILURE_WINDOW_MS)
      .zcard(name)
      .zrevrange(name, limit - 1, limit - 1, 'WITHSCORES')
      .exec())!;
    const count = Number(countResult[1]);
    const oldestCounted = rangeResult[1] as string[];
    if (count < limit || oldestCounted.length < 2) return 0;
    return Math.max(0, Number(oldestCounted[1]) + LOGIN_FAILURE_WINDOW_MS - now);
  }

  async record(key: string, _limit: number, now: number): Promise<void> {
    const name = this.name(key);
    await this.redis
      .multi()
      .zadd(name, now, `${now}-${Math.random().toString(36).slice(2)}`)
      .pexpire(name, LOGIN_FAILURE_WINDOW_MS)
      .exec();
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private name(key: string): string {
    return `cvr:login-failures:${key}`;
  }
}

/**
 * Brute-force protection of the registry login (HTTP Basic and the OAuth2 password form): after
 * LOGIN_FAILURES_PER_MINUTE failed logins from one IP or for one username within a minute, further
 * attempts get 429 until the oldest counted failure leaves the window. Counters live in Redis when
 * REDIS_URL is set (shared by all replicas), otherwise in this process. Should Redis be unreachable,
 * the per-process counter takes over rather than locking everyone out.
 */
@Injectable()
export class LoginThrottle implements OnModuleDestroy {
  private readonly logger = new Logger(LoginThrottle.name);
  private readonly memory = new MemoryFailureCounter();
  private readonly shared?: RedisFailureCounter;

  constructor(
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    @Inject(queueConfig.KEY) queue: QueueConfig,
  ) {
    if (queue.redisUrl) {
      const redis = new Redis(queue.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true });
      redis.on('error', (err: Error) => this.logger.debug(`redis: ${err.message}`));
      this.shared = new RedisFailureCounter(redis);
    }
  }

  /** Seconds the caller must wait before trying again (0: go ahead). */
  async retryAfterSeconds(keys: string[]): Promise<number> {
    const now = Date.now();
    let waitMs = 0;
    for (const key of keys) {
      waitMs = Math.max(waitMs, await this.use((c) => c.retryAfterMs(key, this.limits.loginFailuresPerMinute, now)));
    }
    return waitMs > 0 ? Math.max(1, Math.ceil(waitMs / 1000)) : 0;
  }

  async recordFailure(keys: string[]): Promise<void> {
    const now = Date.now();
    for (const key of keys) await this.use((c) => c.record(key, this.limits.loginFailuresPerMinute, now));
  }

  async onModuleDestroy(): Promise<void> {
    await this.memory.close();
    await this.shared?.close();
  }

  private async use<T>(operation: (counter: FailureCounter) => Promise<T>): Promise<T> {
    if (this.shared) {
      try {
        return await operation(this.shared);
      } catch (err) {
        this.logger.warn(`login throttle: redis unavailable (${(err as Error).message}); counting in this process`);
      }
    }
    return operation(this.memory);
  }
}
