import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { AccountsModule } from './accounts/accounts.module.js';
import { AuthModule } from './auth/auth.module.js';
import { CacheEntriesModule } from './cache-entries/cache-entries.module.js';
import { allConfigNamespaces } from './config/config.js';
import { DatabaseModule } from './database/database.module.js';
import { InvalidationModule } from './invalidation/invalidation.module.js';
import { JobsModule } from './jobs/jobs.module.js';
import { LifecycleModule } from './lifecycle/lifecycle.module.js';
import { ObservabilityModule } from './observability/observability.module.js';
import { PrefetchModule } from './prefetch/prefetch.module.js';
import { ProxyModule } from './proxy/proxy.module.js';
import { RegistriesModule } from './registries/registries.module.js';
import { StorageModule } from './storage/storage.module.js';
import { UpstreamsModule } from './upstreams/upstreams.module.js';

/** The modular monolith: one module per domain concept (see CONVENTIONS.md). */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: allConfigNamespaces }),
    DatabaseModule,
    StorageModule,
    JobsModule,
    InvalidationModule,
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
})
export class AppModule {}
