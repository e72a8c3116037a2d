import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import ipaddr from 'ipaddr.js';
import type { Redis } from 'ioredis';
import { RedisConnections } from '../redis/redis-connections.js';
import { limitsConfig } from '../config/config.js';
import type { LimitsConfig } from '../config/config.js';

export const LOGIN_FAILURE_WINDOW_MS = 60_000;

/** An address may fail this many times more often than one (address, username) pair before it is refused. */
export const ADDRESS_LIMIT_FACTOR = 5;

/** Who is trying to log in: the client address (request.ip, see TRUST_PROXY) and the username tried, if any. */
export interface LoginAttempt {
  address: string;
  username?: string;
}

/**
 * The counting unit of a client address: an IPv4 address (IPv4-mapped IPv6 included) as itself, an IPv6
 * address by its /64 prefix (one subscriber usually holds a whole /64, so counting single IPv6 addresses
 * would let one client rotate through 2^64 of them).
 */
export function clientAddressKey(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  const ip = ipaddr.process(address);
  if (ip.kind() === 'ipv4') return ip.toString();
  const prefix = ip.toByteArray().slice(0, 8);
  return `${ipaddr.fromByteArray([...prefix, 0, 0, 0, 0, 0, 0, 0, 0]).toString()}/64`;
}

/** The counters of one attempt, each with its limit: the address, and the (address, username) pair when a username was sent. */
export function loginThrottleCounters(attempt: LoginAttempt, limit: number): { key: string; limit: number }[] {
  const address = clientAddressKey(attempt.address);
  const counters = [{ key: `ip:${address}`, limit: limit * ADDRESS_LIMIT_FACTOR }];
  if (attempt.username) counters.push({ key: `ip-user:${address}:${attempt.username.toLowerCase().slice(0, 255)}`, limit });
  return counters;
}

/** What a throttled login came to: refused unchecked (429), checked and wrong (401), or the caller. */
export type LoginOutcome<T> = { kind: 'throttled'; retryAfterSeconds: number } | { kind: 'failed' } | { kind: 'ok'; value: T };

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
  constructor(private readonly connections: RedisConnections) {}

  /** The RedisModule's command connection (waiting a moment for it right after boot). */
  private async redis(): Promise<Redis> {
    return (await this.connections.readyCommands())!;
  }

  async retryAfterMs(key: string, limit: number, now: number): Promise<number> {
    const name = this.name(key);
    const [, countResult, rangeResult] = (await (
      await this.redis()
    )
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
    await (
      await this.redis()
    )
      .multi()
      .zadd(name, now, `${now}-${Math.random().toString(36).slice(2)}`)
      .pexpire(name, LOGIN_FAILURE_WINDOW_MS)
      .exec();
  }

  /** The connection is the RedisModule's, closed at shutdown by it. */
  async close(): Promise<void> {}

  private name(key: string): string {
    return `cvr:login-failures:${key}`;
  }
}

/**
 * Brute-force protection of the registry login (HTTP Basic and the OAuth2 password and refresh forms).
 * Failures are counted in a sliding minute per client address and per (client address, username), never
 * per username alone, so nobody can lock another client out of an account by failing to log in as it:
 * - a (client address, username) pair with LOGIN_FAILURES_PER_MINUTE failures is refused (429) for that
 *   username, from that address only;
 * - a client address with ADDRESS_LIMIT_FACTOR (5) times as many failures, whatever the usernames, is
 *   refused for every username (this bounds guessing across many accounts from one address);
 * - a refused attempt is not checked and not counted, and the refusal ends when the oldest counted
 *   failure leaves the minute.
 * The client address is request.ip: the peer, or the X-Forwarded-For client when TRUST_PROXY trusts the
 * peer; IPv6 clients count per /64. Counters live in Redis when REDIS_URL is set (shared by all replicas),
 * otherwise in this process. Should Redis be unreachable, the per-process counter takes over rather than
 * locking everyone out.
 */
@Injectable()
export class LoginThrottle implements OnModuleDestroy {
  private readonly logger = new Logger(LoginThrottle.name);
  private readonly memory = new MemoryFailureCounter();
  private readonly shared?: RedisFailureCounter;

  constructor(
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    redis: RedisConnections,
  ) {
    if (redis.enabled) this.shared = new RedisFailureCounter(redis);
  }

  /**
   * Runs `check` (the credential check of `attempt`) unless the attempt is refused; a null answer counts
   * as a failure.
   */
  async attempt<T>(attempt: LoginAttempt, check: () => Promise<T | null>): Promise<LoginOutcome<T>> {
    const retryAfterSeconds = await this.retryAfterSeconds(attempt);
    if (retryAfterSeconds > 0) return { kind: 'throttled', retryAfterSeconds };
    const value = await check();
    if (value !== null) return { kind: 'ok', value };
    await this.recordFailure(attempt);
    return { kind: 'failed' };
  }

  /** Seconds the caller must wait before trying again (0: go ahead). */
  async retryAfterSeconds(attempt: LoginAttempt): Promise<number> {
    const now = Date.now();
    // The counters are read at once (one round trip to Redis, not one per counter): every login waits for them.
    const waits = await Promise.all(this.counters(attempt).map(({ key, limit }) => this.use((c) => c.retryAfterMs(key, limit, now))));
    const waitMs = Math.max(0, ...waits);
    return waitMs > 0 ? Math.max(1, Math.ceil(waitMs / 1000)) : 0;
  }

  async recordFailure(attempt: LoginAttempt): Promise<void> {
    const now = Date.now();
    await Promise.all(this.counters(attempt).map(({ key, limit }) => this.use((c) => c.record(key, limit, now))));
  }

  async onModuleDestroy(): Promise<void> {
    await this.memory.close();
    await this.shared?.close();
  }

  private counters(attempt: LoginAttempt): { key: string; limit: number }[] {
    return loginThrottleCounters(attempt, this.limits.loginFailuresPerMinute);
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
