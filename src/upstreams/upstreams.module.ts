import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AccountsModule } from '../accounts/accounts.module.js';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { ObservabilityModule } from '../observability/observability.module.js';
import { RegistriesModule } from '../registries/registries.module.js';
import { UpstreamClientModule } from './client/upstream-client.module.js';
import { CredentialEncryptionService } from './credential-encryption.service.js';
import { RegistryDetailController } from './registry-detail.controller.js';
import { RegistryUpstream } from './registry-upstream.entity.js';
import { RegistryUpstreamsController } from './registry-upstreams.controller.js';
import { RegistryUpstreamsService } from './registry-upstreams.service.js';
import { Upstream } from './upstream.entity.js';
import { UpstreamsController } from './upstreams.controller.js';
import { UpstreamHealthMetrics } from './upstream-health-metrics.js';
import { UpstreamsService } from './upstreams.service.js';

/**
 * Upstreams, their ordered association with registries, credentials at rest, and the upstream client
 * (re-exported for the pull path). UpstreamsService.pullTargetOf() is what a pull asks: a registry's
 * upstreams in order, credentials decrypted.
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([Upstream, RegistryUpstream]),
    AccountsModule,
    RegistriesModule,
    UpstreamClientModule,
    InvalidationModule,
    ObservabilityModule,
  ],
  controllers: [UpstreamsController, RegistryUpstreamsController, RegistryDetailController],
  providers: [UpstreamsService, RegistryUpstreamsService, CredentialEncryptionService, UpstreamHealthMetrics],
  exports: [UpstreamsService, RegistryUpstreamsService, CredentialEncryptionService, UpstreamClientModule, RegistriesModule, AccountsModule],
})
export class UpstreamsModule {}
