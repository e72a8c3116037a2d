import { Module } from '@nestjs/common';
import { upstreamConfig, type UpstreamConfig } from '../../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../../invalidation/invalidation-bus.js';
import { InvalidationModule } from '../../invalidation/invalidation.module.js';
import { UpstreamClient } from './upstream-client.js';
import { UpstreamHealth } from './upstream-health.js';

/**
 * The upstream registry HTTP client (configured by upstreamConfig). Observers of its request and
 * token-endpoint events register with UpstreamClient.addObserver(). UpstreamHealth (breakers, budgets,
 * remembered 404s) forgets its 404s on every change the InvalidationBus announces.
 */
@Module({
  imports: [InvalidationModule],
  providers: [
    {
      provide: UpstreamHealth,
      inject: [upstreamConfig.KEY, INVALIDATION_BUS],
      useFactory: (config: UpstreamConfig, bus: InvalidationBus): UpstreamHealth => {
        const health = new UpstreamHealth(config);
        bus.onChange(() => health.forgetAnswers());
        return health;
      },
    },
    UpstreamClient,
  ],
  exports: [UpstreamClient, UpstreamHealth],
})
export class UpstreamClientModule {}
