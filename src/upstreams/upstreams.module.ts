import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { RegistriesModule } from '../registries/registries.module.js';
import { UpstreamClientModule } from './client/upstream-client.module.js';
import { CredentialEncryptionService } from './credential-encryption.service.js';
import { RegistryUpstream } from './registry-upstream.entity.js';
import { RegistryUpstreamsController } from './registry-upstreams.controller.js';
import { RegistryUpstreamsService } from './registry-upstreams.service.js';
import { Upstream } from './upstream.entity.js';
import { UpstreamsController } from './upstreams.controller.js';
import { UpstreamHealthMetrics } from './upstream-health-metrics.js';
import { UpstreamsService } from './upstreams.service.js';

/**
 * Upstreams, their ordered association with registries, credentials at rest, and the upstream client
 * (re-exported for the pull path: UpstreamsService.descriptorOf() + UpstreamClient).
 */
@Module({
  imports: [TypeOrmModule.forFeature([Upstream, RegistryUpstream, CacheEntry]), RegistriesModule, UpstreamClientModule],
  controllers: [UpstreamsController, RegistryUpstreamsController],
  providers: [UpstreamsService, RegistryUpstreamsService, CredentialEncryptionService, UpstreamHealthMetrics],
  exports: [UpstreamsService, RegistryUpstreamsService, CredentialEncryptionService, UpstreamClientModule, RegistriesModule],
})
export class UpstreamsModule {}
