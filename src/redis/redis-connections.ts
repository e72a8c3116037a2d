import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';

/** BullMQ's own connection settings (BullMQ opens, duplicates and closes its connections itself). */
export interface BullmqConnectionOptions {
  url: string;
}

/**
 * The process's Redis connections, when REDIS_URL is set: one for commands (shared by every user), one
 * for subscriptions (a subscribed connection can run no other command), and the settings BullMQ opens its
 * own connections with. Users never close them; close() does, once, at shutdown.
 *
 * The command connection fails fast rather than queueing while Redis is away (no offline queue, one retry,
 * a 2 s command timeout): its users (fill lock, login throttle, invalidation bus, queue probe) all fail
 * open or fall back to this process.
 */
export class RedisConnections {
  private readonly logger = new Logger(RedisConnections.name);
  private commandConnection?: Redis;
  private subscriberConnection?: Redis;
  private closed = false;

  constructor(readonly url: string | undefined) {}

  get enabled(): boolean {
    return this.url !== undefined;
  }

  /** The shared command connection (undefined without REDIS_URL). */
  commands(): Redis | undefined {
    if (!this.url) return undefined;
    if (!this.commandConnection) {
      this.commandConnection = new Redis(this.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 2_000 });
      this.commandConnection.on('error', (err: Error) => this.logger.debug(`redis (commands): ${err.message}`));
    }
    return this.commandConnection;
  }

  /**
   * The command connection once it is ready, waiting up to `waitMs` for it right after boot or during a
   * reconnect (commands fail at once while it is not ready: there is no offline queue).
   */
  async readyCommands(waitMs = 1_000): Promise<Redis | undefined> {
    const redis = this.commands();
    if (!redis || redis.status === 'ready') return redis;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((resolve) => redis.once('ready', resolve)), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    return redis;
  }

  /** The shared subscription connection (undefined without REDIS_URL); it reconnects for as long as it takes. */
  subscriber(): Redis | undefined {
    if (!this.url) return undefined;
    if (!this.subscriberConnection) {
      this.subscriberConnection = new Redis(this.url, { maxRetriesPerRequest: null });
      this.subscriberConnection.on('error', (err: Error) => this.logger.debug(`redis (subscribe): ${err.message}`));
    }
    return this.subscriberConnection;
  }

  /** What BullMQ's Queue and Worker are given (undefined without REDIS_URL). */
  bullmq(): BullmqConnectionOptions | undefined {
    return this.url ? { url: this.url } : undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const open = [this.commandConnection, this.subscriberConnection].filter((c): c is Redis => c !== undefined);
    await Promise.all(open.map((redis) => redis.quit().catch(() => redis.disconnect())));
  }
}
