import { RedisConnections } from '../redis/redis-connections.js';
import { RedisModule } from '../redis/redis.module.js';
import { AccountsModule } from '../accounts/accounts.module.js';
import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuthModule } from '../auth/auth.module.js';
import { CacheEntriesModule } from '../cache-entries/cache-entries.module.js';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { LifecycleModule } from '../lifecycle/lifecycle.module.js';
import { ObservabilityModule } from '../observability/observability.module.js';
import { Registry } from '../registries/registry.entity.js';
import { StorageModule } from '../storage/storage.module.js';
import { Upstream } from '../upstreams/upstream.entity.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { queueConfig, type QueueConfig } from '../config/config.js';
import { BlobOffload } from './blob-offload.js';
import { FILL_LOCK, LocalFillLock, RedisFillLock, type FillLock } from './fill-lock.js';
import { FillPeers } from './fill-peers.js';
import { FillRouteController } from './fill-route.controller.js';
import { ProxyBlobStore } from './proxy-blob-store.js';
import { PullAccessService } from './pull-access.service.js';
import { PullRateLimiter } from './pull-rate-limiter.js';
import { ProxyManifestStore } from './proxy-manifest-store.js';
import { UpstreamListings } from './upstream-listings.js';
import { LayerReadAhead } from './layer-read-ahead.js';
import { RecentBlobEntries } from './recent-blob-entries.js';
import { RecentManifests } from './recent-manifests.js';
import { RegistryPullController, RegistryRootPullController } from './registry-pull.controller.js';

/** The /v2 pull API: hit / stale / miss decisions, pass-through streaming and cache fills. */
@Module({
  imports: [
    TypeOrmModule.forFeature([Registry, Upstream]),
    AccountsModule,
    AuthModule,
    RedisModule,
    CacheEntriesModule,
    UpstreamsModule,
    LifecycleModule,
    JobsModule,
    InvalidationModule,
    StorageModule,
    ObservabilityModule,
  ],
  controllers: [RegistryPullController, RegistryRootPullController, FillRouteController],
  providers: [
    ProxyManifestStore,
    UpstreamListings,
    ProxyBlobStore,
    BlobOffload,
    FillPeers,
    PullAccessService,
    PullRateLimiter,
    RecentManifests,
    RecentBlobEntries,
    LayerReadAhead,
    {
      provide: FILL_LOCK,
      inject: [queueConfig.KEY, RedisConnections],
      useFactory: (queue: QueueConfig, redis: RedisConnections): FillLock => (redis.enabled ? new RedisFillLock(redis, queue.prefix) : new LocalFillLock()),
    },
  ],
  // for pre-warming (PrefetchModule), which drives the pull path through these
  exports: [ProxyManifestStore, ProxyBlobStore],
})
export class ProxyModule implements OnApplicationShutdown {
  constructor(@Inject(FILL_LOCK) private readonly fillLock: FillLock) {}

  async onApplicationShutdown(): Promise<void> {
    await this.fillLock.close();
  }
}
