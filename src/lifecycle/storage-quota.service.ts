import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CacheEntryLookupService } from '../cache-entries/cache-entry-lookup.service.js';
import { CacheEntryStatus } from '../cache-entries/cache-entry.entity.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { DESTROY_PENDING_JOB_ID, errorMessage, JobName, QUEUE_DRIVER, type QueueDriver } from '../jobs/queue-driver.js';
import { MetricsService } from '../observability/metrics.service.js';

/**
 * How long after a new cache entry the pull path's enforcement runs. A pull fetches its image's objects
 * within moments; waiting a little longer than the download flush (CacheEntryLookupService, 1 s) lets the
 * hits of that same pull be recorded first, so an object served a moment ago never ranks as unused.
 */
export const ENFORCE_DELAY_MS = 1500;

/** Objects evicted per statement. */
const EVICTION_BATCH = 200;
/** Upper bound on statements per enforcement (a quota lowered on a huge cache finishes on the next call). */
const MAX_ROUNDS = 100;

export interface QuotaEnforcement {
  groupId: number;
  /** GROUP_STORAGE_QUOTA in bytes; 0 = no quota (nothing is evicted). */
  quotaBytes: number;
  /** Cache entries marked `pending_destruction`. */
  evictedEntries: number;
  /** Bytes of the distinct objects those entries held. */
  evictedBytes: number;
  /** Set when the enforcement failed (it never rejects: a pull must not fail because of the quota). */
  error?: string;
}

/**
 * The per-group storage quota (GROUP_STORAGE_QUOTA, off by default). A group's usage is the size of the
 * distinct objects its live entries reference. Over quota, whole objects are evicted least recently
 * downloaded first (an object's last download is the latest `downloaded_at` of the group's entries for
 * it): every live entry of the group for that digest is marked `pending_destruction`, until the most
 * recently downloaded objects that remain fit, and DESTROY_PENDING is enqueued. An object larger than the
 * quota is evicted too: it was served (passed through) but does not stay cached.
 *
 * The pull path calls `enforceSoon(groupId)` after each new cache entry; RUN_CLEANUP_POLICIES also sweeps
 * every group over quota. Concurrent calls for one group share one enforcement (plus one re-run).
 * Recency is as current as the download statistics: this process's pending downloads are written before
 * ranking, other replicas' may lag by their flush interval (about a second).
 */
@Injectable()
export class StorageQuotaService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(StorageQuotaService.name);
  private readonly inflight = new Map<number, { again: boolean; done: Promise<QuotaEnforcement> }>();
  private readonly scheduled = new Map<number, NodeJS.Timeout>();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    private readonly metrics: MetricsService,
    private readonly downloads: CacheEntryLookupService,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  /** GROUP_STORAGE_QUOTA in bytes; 0 = off. */
  get quotaBytes(): number {
    return this.limits.groupStorageQuota;
  }

  /**
   * For the pull path, after a new cache entry: enforce() for the group ENFORCE_DELAY_MS from now (once,
   * however many entries the pull creates meanwhile). Nothing to do when the quota is off.
   */
  enforceSoon(groupId: number): void {
    if (this.quotaBytes <= 0 || this.scheduled.has(groupId)) return;
    const timer = setTimeout(() => {
      this.scheduled.delete(groupId);
      void this.enforce(groupId);
    }, ENFORCE_DELAY_MS);
    timer.unref();
    this.scheduled.set(groupId, timer);
  }

  /** Shutdown: scheduled enforcements are dropped (the periodic sweep catches up), running ones finish. */
  async beforeApplicationShutdown(): Promise<void> {
    for (const timer of this.scheduled.values()) clearTimeout(timer);
    this.scheduled.clear();
    await Promise.all([...this.inflight.values()].map((state) => state.done));
  }

  /**
   * Evicts least-recently-downloaded objects of the group until it is under quota. Never rejects (a
   * failure is logged and reported in `error`); cheap when the quota is off. Safe to call without awaiting.
   */
  enforce(groupId: number): Promise<QuotaEnforcement> {
    const quotaBytes = this.quotaBytes;
    if (quotaBytes <= 0) return Promise.resolve({ groupId, quotaBytes, evictedEntries: 0, evictedBytes: 0 });
    const running = this.inflight.get(groupId);
    if (running) {
      running.again = true;
      return running.done;
    }
    const state = { again: false, done: undefined as unknown as Promise<QuotaEnforcement> };
    state.done = (async () => {
      const total: QuotaEnforcement = { groupId, quotaBytes, evictedEntries: 0, evictedBytes: 0 };
      try {
        do {
          state.again = false;
          const round = await this.evict(groupId, quotaBytes);
          total.evictedEntries += round.entries;
          total.evictedBytes += round.bytes;
        } while (state.again);
      } catch (err) {
        total.error = errorMessage(err);
        this.metrics.lifecycleRuns.inc({ job: 'quota', outcome: 'failure' });
        this.logger.error({ msg: 'quota enforcement failed', job: 'quota', groupId, error: total.error });
        return total;
      } finally {
        this.inflight.delete(groupId);
      }
      this.metrics.lifecycleRuns.inc({ job: 'quota', outcome: 'success' });
      if (total.evictedEntries) await this.enqueueDestroy();
      return total;
    })();
    this.inflight.set(groupId, state);
    return state.done;
  }

  /** Enforces the quota on every group whose live entries exceed it (the periodic sweep). */
  async enforceAll(): Promise<QuotaEnforcement[]> {
    const quotaBytes = this.quotaBytes;
    if (quotaBytes <= 0) return [];
    // Entry sizes summed per group are an upper bound of its usage (objects shared by entries count once).
    const groups = (await this.dataSource.query(
      `SELECT group_id FROM cache_entries WHERE status = $1 GROUP BY group_id HAVING sum(size) > $2 ORDER BY group_id`,
      [CacheEntryStatus.DEFAULT, quotaBytes],
    )) as { group_id: number }[];
    const results: QuotaEnforcement[] = [];
    for (const { group_id } of groups) results.push(await this.enforce(Number(group_id)));
    return results;
  }

  private async evict(groupId: number, quotaBytes: number): Promise<{ entries: number; bytes: number }> {
    let entries = 0;
    let bytes = 0;
    // Downloads are written in batches (about a second late): write this process's pending ones first, so
    // content served a moment ago (a cache hit in the pull that triggered this) does not look unused.
    await this.downloads.flushDownloads();
    for (let round = 0; round < MAX_ROUNDS; round++) {
      // Objects by last download, newest first: those beyond the quota in that order are evicted, oldest
      // first; ranking and marking in one statement see one snapshot. A row whose download is written
      // meanwhile (another connection's flush, committed while this waits for the row) fails the
      // `downloaded_at <=` recheck and stays.
      const marked = (await this.dataSource.query(
        `WITH usage AS (
           SELECT digest, max(size) AS size, max(downloaded_at) AS last_downloaded_at
             FROM cache_entries WHERE group_id = $1 AND status = $2 GROUP BY digest),
         ranked AS (
           SELECT digest, last_downloaded_at,
                  sum(size) OVER (ORDER BY last_downloaded_at DESC, digest DESC ROWS UNBOUNDED PRECEDING) AS newest_bytes
             FROM usage),
         victims AS (
           SELECT digest, last_downloaded_at FROM ranked WHERE newest_bytes > $3 ORDER BY last_downloaded_at ASC, digest ASC LIMIT $4),
         marked AS (
           UPDATE cache_entries e SET status = $5, updated_at = now()
             FROM victims v
            WHERE e.group_id = $1 AND e.status = $2 AND e.digest = v.digest AND e.downloaded_at <= v.last_downloaded_at
           RETURNING e.digest, e.size)
         SELECT digest, max(size) AS size, count(*)::int AS entries FROM marked GROUP BY digest`,
        [groupId, CacheEntryStatus.DEFAULT, quotaBytes, EVICTION_BATCH, CacheEntryStatus.PENDING_DESTRUCTION],
      )) as { digest: string; size: string; entries: number }[];
      if (marked.length === 0) break;
      this.bus.changed(`quota eviction in group ${groupId}`);
      const roundEntries = marked.reduce((sum, m) => sum + m.entries, 0);
      const roundBytes = marked.reduce((sum, m) => sum + Number(m.size), 0);
      entries += roundEntries;
      bytes += roundBytes;
      this.metrics.cacheEvictions.inc(roundEntries);
      this.metrics.cacheEvictedBytes.inc(roundBytes);
      this.metrics.lifecycleEntries.inc({ job: 'quota', action: 'marked' }, roundEntries);
      this.metrics.lifecycleBytes.inc({ job: 'quota', action: 'marked' }, roundBytes);
      this.logger.log({
        msg: 'quota: evicted least recently downloaded objects',
        job: 'quota',
        groupId,
        quotaBytes,
        entries: roundEntries,
        objects: marked.length,
        bytes: roundBytes,
      });
    }
    return { entries, bytes };
  }

  private async enqueueDestroy(): Promise<void> {
    try {
      await this.queue.add(JobName.DESTROY_PENDING, {}, { jobId: DESTROY_PENDING_JOB_ID });
    } catch (err) {
      // The repeated run picks the entries up within a minute.
      this.logger.warn({ msg: 'quota: could not enqueue the destroy job', job: 'quota', error: errorMessage(err) });
    }
  }
}
