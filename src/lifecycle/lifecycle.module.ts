import { AccountsModule } from '../accounts/accounts.module.js';
import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CacheEntriesModule } from '../cache-entries/cache-entries.module.js';
import { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { ObservabilityModule } from '../observability/observability.module.js';
import { RegistriesModule } from '../registries/registries.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { CacheDestructionService } from './cache-destruction.service.js';
import { CleanupPoliciesController } from './cleanup-policies.controller.js';
import { CleanupPoliciesService } from './cleanup-policies.service.js';
import { CleanupPolicyRunner } from './cleanup-policy-runner.service.js';
import { CleanupPolicy } from './cleanup-policy.entity.js';
import { CLOCK, SystemClock } from './clock.js';
import { LifecycleJobs } from './lifecycle-jobs.service.js';
import { OrphanCleanupService } from './orphan-cleanup.service.js';
import { StorageQuotaService } from './storage-quota.service.js';

/**
 * The cache lifecycle (SPEC section 6): destroying entries pending destruction, orphan cleanup, cleanup
 * policies (admin API + scheduled runs) and the per-group storage quota. The pull path imports it for
 * StorageQuotaService.enforce().
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([CacheEntry, CleanupPolicy]),
    AccountsModule,
    RegistriesModule,
    CacheEntriesModule,
    JobsModule,
    InvalidationModule,
    StorageModule,
    ObservabilityModule,
  ],
  controllers: [CleanupPoliciesController],
  providers: [
    { provide: CLOCK, useClass: SystemClock },
    CacheDestructionService,
    OrphanCleanupService,
    StorageQuotaService,
    CleanupPoliciesService,
    CleanupPolicyRunner,
    LifecycleJobs,
  ],
  exports: [StorageQuotaService, CacheDestructionService, OrphanCleanupService, CleanupPolicyRunner, CLOCK],
})
export class LifecycleModule {}
