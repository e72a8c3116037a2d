import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuthModule } from '../auth/auth.module.js';
import { CacheEntriesModule } from '../cache-entries/cache-entries.module.js';
import { Registry } from '../registries/registry.entity.js';
import { Upstream } from '../upstreams/upstream.entity.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { PullAccessService } from './pull-access.service.js';
import { PullTargetResolver } from './pull-target.resolver.js';
import { PullService } from './pull.service.js';
import { RegistryPullController } from './registry-pull.controller.js';

/** The /v2 pull API: hit / stale / miss decisions, pass-through streaming and cache fills. */
@Module({
  imports: [TypeOrmModule.forFeature([Registry, Upstream]), AuthModule, CacheEntriesModule, UpstreamsModule],
  controllers: [RegistryPullController],
  providers: [PullService, PullAccessService, PullTargetResolver],
})
export class ProxyModule {}
