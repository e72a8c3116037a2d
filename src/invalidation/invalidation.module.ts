import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { RedisConnections } from '../redis/redis-connections.js';
import { RedisModule } from '../redis/redis.module.js';
import { queueConfig, type QueueConfig } from '../config/config.js';
import { INVALIDATION_BUS, LocalInvalidationBus, RedisInvalidationBus, type InvalidationBus } from './invalidation-bus.js';

/**
 * INVALIDATION_BUS for the modules that import it (Redis pub/sub across replicas when REDIS_URL is set). The services
 * that change access or cached content tell it after the change is committed and before they return,
 * so the response of an admin API call is only sent once this replica forgot what it remembered.
 */
@Module({
  imports: [RedisModule],
  providers: [
    {
      provide: INVALIDATION_BUS,
      inject: [queueConfig.KEY, RedisConnections],
      useFactory: (queue: QueueConfig, redis: RedisConnections): InvalidationBus =>
        redis.enabled ? new RedisInvalidationBus(redis, queue.prefix) : new LocalInvalidationBus(),
    },
  ],
  exports: [INVALIDATION_BUS],
})
export class InvalidationModule implements OnApplicationShutdown {
  constructor(@Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus) {}

  async onApplicationShutdown(): Promise<void> {
    await this.bus.close();
  }
}
