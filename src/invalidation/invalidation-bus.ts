import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';

/**
 * Tells every in-memory cache of every replica that what it remembers may be out of date: access
 * (credentials, memberships, registries, upstreams and their order) or cache entries (purged, evicted,
 * cleaned up). Listeners of this process run synchronously inside `changed()`, so the change is seen
 * by the very next request this process handles; other replicas hear of it through Redis.
 */
export interface InvalidationBus {
  /** Something remembered may be out of date; `reason` is for the logs. */
  changed(reason: string): void;
  /** `listener` forgets what it remembers; it runs for this replica's changes and for the others'. */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

export const INVALIDATION_BUS = 'INVALIDATION_BUS';

/** One replica: listeners run at once. */
export class LocalInvalidationBus implements InvalidationBus {
  private readonly listeners: (() => void)[] = [];

  changed(_reason: string): void {
    this.notify();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {}

  protected notify(): void {
    for (const listener of this.listeners) listener();
  }
}

interface ChangeMessage {
  origin: string;
  reason: string;
}

/**
 * Several replicas (REDIS_URL): a change runs this replica's listeners at once and is published on
 * `<prefix>:cvr-invalidate`; the other replicas run theirs when the message arrives. While Redis is
 * unreachable a replica misses changes, so each memory cache also expires on its own
 * (MEMORY_CACHE_TTL_MS); after a reconnect every listener runs once, since changes may have been missed.
 */
export class RedisInvalidationBus extends LocalInvalidationBus {
  private readonly logger = new Logger(RedisInvalidationBus.name);
  private readonly origin = randomUUID();
  private readonly channel: string;
  private readonly publisher: Redis;
  private readonly subscriber: Redis;

  constructor(redisUrl: string, prefix: string) {
    super();
    this.channel = `${prefix}:cvr-invalidate`;
    this.publisher = new Redis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
    this.publisher.on('error', (err: Error) => this.logger.debug(`redis (publish): ${err.message}`));
    this.subscriber.on('error', (err: Error) => this.logger.debug(`redis (subscribe): ${err.message}`));
    let subscribedOnce = false;
    this.subscriber.on('ready', () => {
      this.subscriber.subscribe(this.channel).catch((err: Error) => this.logger.warn(`cannot subscribe to ${this.channel}: ${err.message}`));
      if (subscribedOnce) this.notify();
      subscribedOnce = true;
    });
    this.subscriber.on('message', (channel: string, raw: string) => {
      if (channel !== this.channel) return;
      const message = parseMessage(raw);
      if (message?.origin === this.origin) return;
      this.notify();
    });
  }

  override changed(reason: string): void {
    this.notify();
    const message: ChangeMessage = { origin: this.origin, reason };
    this.publisher.publish(this.channel, JSON.stringify(message)).catch((err: Error) => {
      this.logger.warn(`other replicas did not hear of "${reason}" (${err.message}); their memory caches expire on their own`);
    });
  }

  override async close(): Promise<void> {
    await Promise.all([this.publisher, this.subscriber].map((redis) => redis.quit().catch(() => redis.disconnect())));
  }
}

function parseMessage(raw: string): ChangeMessage | undefined {
  try {
    const value = JSON.parse(raw) as Partial<ChangeMessage>;
    return typeof value.origin === 'string' ? { origin: value.origin, reason: String(value.reason) } : undefined;
  } catch {
    return undefined;
  }
}
