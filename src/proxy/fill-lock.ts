import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';

/**
 * Who fills a cache entry when several replicas miss the same content at once: the holder of the
 * lock downloads into the cache; the others stream from the upstream without a second cache write.
 * Within one process, InflightBlobFills already coalesces; this is the cross-replica part.
 */
export interface FillLock {
  /** A lease when this process should fill `key`; undefined when another process is filling it. */
  acquire(key: string): Promise<FillLease | undefined>;
  close(): Promise<void>;
}

export interface FillLease {
  release(): Promise<void>;
}

export const FILL_LOCK = 'FILL_LOCK';

/** One process (no Redis): every fill is ours. */
export class LocalFillLock implements FillLock {
  async acquire(): Promise<FillLease> {
    return { release: async () => undefined };
  }

  async close(): Promise<void> {}
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * A Redis lease per fill (SET NX PX), renewed while the fill runs so a slow download keeps it, and
 * expiring on its own if the process dies. Redis trouble fails open: the fill proceeds (storage
 * dedupes identical digests, so the worst case is one extra download, never a wrong entry).
 */
export class RedisFillLock implements FillLock {
  private readonly logger = new Logger(RedisFillLock.name);
  private readonly redis: Redis;

  constructor(
    redisUrl: string,
    private readonly prefix: string,
    private readonly ttlMs = 30_000,
  ) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
    this.redis.on('error', (err: Error) => this.logger.debug(`redis: ${err.message}`));
  }

  async acquire(key: string): Promise<FillLease | undefined> {
    const redisKey = `${this.prefix}:cvr-fill:${key}`;
    const token = randomUUID();
    try {
      const ok = await this.redis.set(redisKey, token, 'PX', this.ttlMs, 'NX');
      if (ok !== 'OK') return undefined;
    } catch (err) {
      this.logger.warn(`fill lock unavailable (${(err as Error).message}); filling without it`);
      return { release: async () => undefined };
    }
    const renew = setInterval(() => {
      this.redis.eval(RENEW, 1, redisKey, token, String(this.ttlMs)).catch(() => undefined);
    }, Math.floor(this.ttlMs / 3));
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        await this.redis.eval(RELEASE, 1, redisKey, token).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
