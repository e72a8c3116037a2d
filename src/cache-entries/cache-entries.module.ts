import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { CacheEntriesController } from './cache-entries.controller.js';
import { CacheEntriesService } from './cache-entries.service.js';
import { CacheEntryCreateOrUpdateService } from './cache-entry-create-or-update.service.js';
import { CacheEntryLookupService } from './cache-entry-lookup.service.js';
import { CacheEntryUploadService } from './cache-entry-upload.service.js';
import { CacheEntryUploadsController } from './cache-entry-uploads.controller.js';
import { CacheEntry } from './cache-entry.entity.js';

/**
 * Cache entries: the admin API (list, delete, purge through the MARK_FOR_DESTRUCTION job) and the
 * CreateOrUpdate service the background caching worker commits fills with.
 */
@Module({
  imports: [TypeOrmModule.forFeature([CacheEntry]), UpstreamsModule, JobsModule, InvalidationModule, StorageModule],
  controllers: [CacheEntriesController, CacheEntryUploadsController],
  providers: [CacheEntriesService, CacheEntryCreateOrUpdateService, CacheEntryLookupService, CacheEntryUploadService],
  exports: [CacheEntriesService, CacheEntryCreateOrUpdateService, CacheEntryLookupService, CacheEntryUploadService],
})
export class CacheEntriesModule {}
