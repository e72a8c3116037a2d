import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import type { Actor } from '../accounts/actor.js';
import { GroupPermission } from '../accounts/actor.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { DESTROY_PENDING_JOB_ID, errorMessage, JobName, QUEUE_DRIVER } from '../jobs/queue-driver.js';
import type { QueueDriver, QueuedJob } from '../jobs/queue-driver.js';
import { Page } from '../common/pagination.js';
import { cacheEntryNotFound } from '../common/not-found.exceptions.js';
import type { PageRequest } from '../common/page-request.js';

import { RegistriesService } from '../registries/registries.service.js';
import { exclusiveUpstreamIds } from '../upstreams/registry-upstreams.service.js';
import { UpstreamsService } from '../upstreams/upstreams.service.js';
import { decodeCacheEntryId, normalizeRelativePath } from './cache-entry-id.js';
import { CacheEntry, CacheEntryStatus } from './cache-entry.entity.js';

/** Payload of JobName.MARK_FOR_DESTRUCTION: one upstream's cache, or the cache of a registry's exclusive upstreams. */
export type MarkForDestructionJob = { upstreamId: number } | { registryId: number };

/** Rows marked per statement by the purge job. */
export const MARK_FOR_DESTRUCTION_BATCH_SIZE = 1000;

/**
 * Cache entries through the admin API: list an upstream's live entries, delete one, purge an
 * upstream's or a registry's cache. Deleting only marks entries `pending_destruction` (they stop being
 * served at once, since only `default` entries are live); the destroy job removes rows and objects.
 * Purges run as a queued job that marks in batches, so a million-entry cache never holds one long lock,
 * then enqueues the destroy job at once.
 */
@Injectable()
export class CacheEntriesService implements OnModuleInit {
  private readonly logger = new Logger(CacheEntriesService.name);

  constructor(
    @InjectRepository(CacheEntry) private readonly entries: Repository<CacheEntry>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly upstreams: UpstreamsService,
    private readonly registries: RegistriesService,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  onModuleInit(): void {
    this.upstreams.probeCachedPathsWith((upstreamId) => this.firstCachedPath(upstreamId));
    this.queue.registerHandler<MarkForDestructionJob>(JobName.MARK_FOR_DESTRUCTION, async (job: QueuedJob<MarkForDestructionJob>) => {
      const marked = await this.markForDestruction(job.data);
      // Destroyed now rather than by the next scheduled run (up to a minute later).
      if (marked) await this.enqueueDestroy();
      return marked;
    });
  }

  /** The relative path of an upstream's oldest servable cache entry (what an upstream test probes). */
  async firstCachedPath(upstreamId: number): Promise<string | undefined> {
    const cached = await this.entries.findOne({
      select: { id: true, relativePath: true },
      where: { upstreamId, status: CacheEntryStatus.DEFAULT },
      order: { id: 'ASC' },
    });
    return cached?.relativePath;
  }

  private async enqueueDestroy(): Promise<void> {
    try {
      await this.queue.add(JobName.DESTROY_PENDING, {}, { jobId: DESTROY_PENDING_JOB_ID });
    } catch (err) {
      this.logger.warn({ msg: 'could not enqueue the destroy job; the scheduled run picks the entries up', error: errorMessage(err) });
    }
  }

  /** An upstream's live entries, by relative path, optionally filtered by a substring of the path. */
  async list(actor: Actor, upstreamId: number, page: PageRequest, search?: string): Promise<Page<CacheEntry>> {
    const upstream = await this.upstreams.findAccessible(actor, upstreamId, GroupPermission.READ);
    const query = this.entries
      .createQueryBuilder('e')
      .where('e.upstream_id = :upstreamId AND e.status = :status', { upstreamId: upstream.id, status: CacheEntryStatus.DEFAULT });
    if (search) query.andWhere(`e.relative_path ILIKE :search ESCAPE '\\'`, { search: `%${escapeLike(search)}%` });
    const [items, total] = await query.orderBy('e.relative_path', 'ASC').skip(page.skip).take(page.perPage).getManyAndCount();
    return new Page(items, total, page.page, page.perPage);
  }

  /** Marks the live entry an API id names as `pending_destruction`. */
  async deleteOne(actor: Actor, id: string): Promise<void> {
    const key = decodeCacheEntryId(id);
    if (!key) throw cacheEntryNotFound();
    const upstream = await this.upstreams.findAccessible(actor, key.upstreamId, GroupPermission.WRITE);
    const result = await this.entries.update(
      { upstreamId: upstream.id, relativePath: normalizeRelativePath(key.relativePath), status: CacheEntryStatus.DEFAULT },
      { status: CacheEntryStatus.PENDING_DESTRUCTION },
    );
    if (!result.affected) throw cacheEntryNotFound();
    this.bus.changed(`cache entry ${id} deleted`);
  }

  /** Schedules every entry of an upstream for destruction. */
  async purgeUpstream(actor: Actor, upstreamId: number): Promise<void> {
    const upstream = await this.upstreams.findAccessible(actor, upstreamId, GroupPermission.WRITE);
    await this.queue.add<MarkForDestructionJob>(JobName.MARK_FOR_DESTRUCTION, { upstreamId: upstream.id }, { jobId: `purge-upstream-${upstream.id}` });
  }

  /** Schedules the entries of the registry's exclusive upstreams (used by no other registry) for destruction. */
  async purgeRegistry(actor: Actor, registryId: number): Promise<void> {
    const registry = await this.registries.findAccessible(actor, registryId, GroupPermission.WRITE);
    await this.queue.add<MarkForDestructionJob>(JobName.MARK_FOR_DESTRUCTION, { registryId: registry.id }, { jobId: `purge-registry-${registry.id}` });
  }

  /**
   * The MARK_FOR_DESTRUCTION job: marks entries in batches (`FOR UPDATE SKIP LOCKED`, so it never waits
   * on a fill in progress). Idempotent; returns how many entries it marked.
   */
  async markForDestruction(job: MarkForDestructionJob): Promise<number> {
    const upstreamIds = 'upstreamId' in job ? [job.upstreamId] : await exclusiveUpstreamIds(this.dataSource.manager, job.registryId);
    if (upstreamIds.length === 0) return 0;
    let marked = 0;
    for (;;) {
      const [, count] = (await this.dataSource.query(
        `WITH batch AS (
           SELECT id FROM cache_entries
            WHERE upstream_id = ANY($1::int[]) AND status <> $2
            ORDER BY id LIMIT $3
            FOR UPDATE SKIP LOCKED)
         UPDATE cache_entries e SET status = $2, updated_at = now() FROM batch WHERE e.id = batch.id`,
        [upstreamIds, CacheEntryStatus.PENDING_DESTRUCTION, MARK_FOR_DESTRUCTION_BATCH_SIZE],
      )) as [unknown, number];
      marked += count;
      if (count > 0) this.bus.changed(`purge of upstream(s) ${upstreamIds.join(', ')}`);
      if (count < MARK_FOR_DESTRUCTION_BATCH_SIZE) break;
    }
    if (marked) this.logger.log(`marked ${marked} cache entr${marked === 1 ? 'y' : 'ies'} of upstream(s) ${upstreamIds.join(', ')} for destruction`);
    return marked;
  }
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}
