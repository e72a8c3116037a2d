import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { RedisConnections } from '../redis/redis-connections.js';

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

  private readonly onReady: () => void;
  /** Settles once the channel subscription is in place (the first time). */
  readonly subscribed: Promise<void>;
  private readonly onMessage: (channel: string, raw: string) => void;

  /** Publishes on the RedisModule's command connection and listens on its subscription connection. */
  constructor(connections: RedisConnections, prefix: string) {
    super();
    const publisher = connections.commands();
    const subscriber = connections.subscriber();
    if (!publisher || !subscriber) throw new Error('RedisInvalidationBus needs REDIS_URL');
    this.publisher = publisher;
    this.subscriber = subscriber;
    this.channel = `${prefix}:cvr-invalidate`;
    let subscribedOnce = false;
    let markSubscribed: () => void = () => undefined;
    this.subscribed = new Promise((resolve) => (markSubscribed = resolve));
    this.onReady = () => {
      this.subscriber
        .subscribe(this.channel)
        .then(() => markSubscribed())
        .catch((err: Error) => this.logger.warn(`cannot subscribe to ${this.channel}: ${err.message}`));
      if (subscribedOnce) this.notify();
      subscribedOnce = true;
    };
    this.onMessage = (channel: string, raw: string) => {
      if (channel !== this.channel) return;
      const message = parseMessage(raw);
      if (message?.origin === this.origin) return;
      this.notify();
    };
    this.subscriber.on('ready', this.onReady);
    this.subscriber.on('message', this.onMessage);
    if (this.subscriber.status === 'ready') this.onReady();
  }

  override changed(reason: string): void {
    this.notify();
    const message: ChangeMessage = { origin: this.origin, reason };
    this.publisher.publish(this.channel, JSON.stringify(message)).catch((err: Error) => {
      this.logger.warn(`other replicas did not hear of "${reason}" (${err.message}); their memory caches expire on their own`);
    });
  }

  /** Stops listening; the connections are the RedisModule's, closed at shutdown by it. */
  override async close(): Promise<void> {
    this.subscriber.off('ready', this.onReady);
    this.subscriber.off('message', this.onMessage);
    if (this.subscriber.status === 'ready') await this.subscriber.unsubscribe(this.channel).catch(() => undefined);
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
