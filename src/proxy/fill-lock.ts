import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { RedisConnections } from '../redis/redis-connections.js';

/**
 * Who downloads a blob into the cache when several replicas miss it at once. The holder of the lease
 * for (upstream, relative path) downloads it; the others follow the holder's fill over its internal
 * fill route (`FillHolder.peerUrl`, authorised by the lease's random `token`), so one upstream download
 * serves every replica. Within one process InflightBlobFills coalesces before anyone asks for a lease.
 */
export interface FillLock {
  /**
   * Claims `key` for this process, announcing `holder` (its token and, in processes that serve HTTP,
   * the URL other replicas reach it at). A lease when the claim is ours, otherwise who holds it.
   */
  claim(key: string, holder: FillHolder): Promise<FillClaim>;
  /**
   * Drops a claim whose holder cannot be reached (it died): only if `holder` still holds `key`, so a
   * newer holder's claim is never removed. True when it was removed.
   */
  takeOver(key: string, holder: FillHolder): Promise<boolean>;
  close(): Promise<void>;
}

/** What a lease announces to the other replicas. */
export interface FillHolder {
  /** Random, unguessable: a follower presents it to the holder's fill route. */
  token: string;
  /** Base URL of the holder's HTTP listener; absent for processes without one (the worker). */
  peerUrl?: string;
}

export type FillClaim = { lease: FillLease } | { heldBy: FillHolder };

export interface FillLease {
  release(): Promise<void>;
}

export const FILL_LOCK = 'FILL_LOCK';

export function newFillHolder(peerUrl: string | undefined): FillHolder {
  return peerUrl ? { token: randomUUID(), peerUrl } : { token: randomUUID() };
}

/** One process (no Redis): every claim is ours. */
export class LocalFillLock implements FillLock {
  async claim(): Promise<FillClaim> {
    return { lease: { release: async () => undefined } };
  }

  async takeOver(): Promise<boolean> {
    return false;
  }

  async close(): Promise<void> {}
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** How long a claim waits for a Redis connection that is not ready yet before it fills without a lease. */
const CONNECT_WAIT_MS = 1_000;

/** How long a lease outlives a holder that stopped renewing it (a replica killed mid-fill). */
export const FILL_LEASE_TTL_MS = 10_000;

/**
 * A Redis lease per fill (SET NX PX, the value is the holder), renewed while the fill runs so a slow
 * download keeps it, and expiring FILL_LEASE_TTL_MS after the holder dies. Redis trouble fails open:
 * the fill proceeds without a lease (storage dedupes identical digests, so the worst case is one extra
 * download, never a wrong entry).
 */
export class RedisFillLock implements FillLock {
  private readonly logger = new Logger(RedisFillLock.name);
  private readonly redis: Redis;

  /**
   * `connections` is the process's RedisModule: its command connection has no offline queue and a 2 s
   * command timeout, so a Redis that stops answering does not hold up misses (the claim fails open).
   */
  constructor(
    connections: RedisConnections,
    private readonly prefix: string,
    private readonly ttlMs = FILL_LEASE_TTL_MS,
  ) {
    const redis = connections.commands();
    if (!redis) throw new Error('RedisFillLock needs REDIS_URL');
    this.redis = redis;
  }

  async claim(key: string, holder: FillHolder): Promise<FillClaim> {
    const redisKey = this.redisKey(key);
    const value = JSON.stringify(holder);
    try {
      await this.connected();
      // Twice: the holder may let go between our SET and our GET.
      for (let attempt = 0; attempt < 2; attempt++) {
        if ((await this.redis.set(redisKey, value, 'PX', this.ttlMs, 'NX')) === 'OK') return { lease: this.lease(redisKey, value) };
        const current = await this.redis.get(redisKey);
        if (current !== null) return { heldBy: parseHolder(current) ?? this.unfollowable(redisKey) };
      }
    } catch (err) {
      this.logger.warn(`fill lock unavailable (${(err as Error).message}); filling without it`);
    }
    return { lease: { release: async () => undefined } };
  }

  async takeOver(key: string, holder: FillHolder): Promise<boolean> {
    try {
      return (await this.redis.eval(RELEASE, 1, this.redisKey(key), JSON.stringify(holder))) === 1;
    } catch {
      return false;
    }
  }

  /** The connection is the RedisModule's, closed at shutdown by it. */
  async close(): Promise<void> {}

  /** Right after boot (or a reconnect) commands fail at once (no offline queue): give the connection a moment. */
  private async connected(): Promise<void> {
    if (this.redis.status === 'ready') return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((resolve) => this.redis.once('ready', resolve)), new Promise((resolve) => (timer = setTimeout(resolve, CONNECT_WAIT_MS)))]);
    clearTimeout(timer);
  }

  private lease(redisKey: string, value: string): FillLease {
    const renew = setInterval(
      () => {
        this.redis.eval(RENEW, 1, redisKey, value, String(this.ttlMs)).catch(() => undefined);
      },
      Math.floor(this.ttlMs / 4),
    );
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        await this.redis.eval(RELEASE, 1, redisKey, value).catch(() => undefined);
      },
    };
  }

  /** A holder whose value we cannot read (an older version's lease, or garbage): held, but not to be followed. */
  private unfollowable(redisKey: string): FillHolder {
    this.logger.warn(`the fill lease ${redisKey} names no holder this version can follow; streaming around it`);
    return { token: '' };
  }

  private redisKey(key: string): string {
    return `${this.prefix}:cvr-fill:${key}`;
  }
}

/** The holder a lease names; a peer URL is kept only as a plain `http://host:port` origin. */
function parseHolder(value: string): FillHolder | undefined {
  let parsed: Partial<Record<keyof FillHolder, unknown>>;
  try {
    parsed = JSON.parse(value) as Partial<Record<keyof FillHolder, unknown>>;
  } catch {
    return undefined;
  }
  if (typeof parsed?.token !== 'string' || !/^[0-9a-f-]{36}$/.test(parsed.token)) return undefined;
  return typeof parsed.peerUrl === 'string' && isPeerOrigin(parsed.peerUrl) ? { token: parsed.token, peerUrl: parsed.peerUrl } : { token: parsed.token };
}

export function isPeerOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' && url.origin === value && !url.username && !url.password;
  } catch {
    return false;
  }
}
