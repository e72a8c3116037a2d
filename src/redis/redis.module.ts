import { Module, OnApplicationShutdown } from '@nestjs/common';
import { queueConfig, type QueueConfig } from '../config/config.js';
import { RedisConnections } from './redis-connections.js';

/**
 * Owns the Redis connections (REDIS_URL) of the process: the queue driver, the invalidation bus, the login
 * throttle and the fill lock all use these rather than opening their own. Closed at shutdown, after the
 * modules that import this one have shut down (Nest closes importers first).
 */
@Module({
  providers: [
    {
      provide: RedisConnections,
      inject: [queueConfig.KEY],
      useFactory: (queue: QueueConfig) => new RedisConnections(queue.redisUrl),
    },
  ],
  exports: [RedisConnections],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(private readonly connections: RedisConnections) {}

  async onApplicationShutdown(): Promise<void> {
    await this.connections.close();
  }
}
