import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AccountsModule } from '../accounts/accounts.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { ProxyModule } from '../proxy/proxy.module.js';
import { RegistriesModule } from '../registries/registries.module.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { PrefetchController } from './prefetch.controller.js';
import { Prefetch, PrefetchImage } from './prefetch.entity.js';
import { PrefetchService } from './prefetch.service.js';

/**
 * Pre-warming (PREFETCH_IMAGE jobs): depends on the pull path (ProxyModule's ProxyManifestStore, ProxyBlobStore,
 * UpstreamsService.pullTargetOf), never the other way round. In the API and in the worker (both load AppModule).
 */
@Module({
  imports: [TypeOrmModule.forFeature([Prefetch, PrefetchImage]), ProxyModule, RegistriesModule, UpstreamsModule, AccountsModule, JobsModule],
  controllers: [PrefetchController],
  providers: [PrefetchService],
})
export class PrefetchModule {}
