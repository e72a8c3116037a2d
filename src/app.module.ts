import { Module, type DynamicModule } from '@nestjs/common';
import { AccountsModule } from './accounts/accounts.module.js';
import { AuthModule } from './auth/auth.module.js';
import { CacheEntriesModule } from './cache-entries/cache-entries.module.js';
import { ConfigModule } from './config/config.module.js';
import type { Environment } from './config/environment.js';
import { DatabaseModule } from './database/database.module.js';
import { LifecycleModule } from './lifecycle/lifecycle.module.js';
import { ObservabilityModule } from './observability/observability.module.js';
import { PrefetchModule } from './prefetch/prefetch.module.js';
import { ProxyModule } from './proxy/proxy.module.js';
import { RegistriesModule } from './registries/registries.module.js';
import { UpstreamsModule } from './upstreams/upstreams.module.js';

/**
 * The modular monolith: one module per domain concept (see CONVENTIONS.md), configured by the environment
 * the process entry point parsed. The platform modules (jobs, invalidation, storage, redis) are imported
 * by the modules that use them; only the configuration is global.
 */
@Module({})
export class AppModule {
  static forRoot(env: Environment): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(env),
        DatabaseModule,
        ObservabilityModule,
        AuthModule,
        AccountsModule,
        RegistriesModule,
        UpstreamsModule,
        CacheEntriesModule,
        ProxyModule,
        PrefetchModule,
        LifecycleModule,
      ],
    };
  }
}
