import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CacheEntryStatus } from '../cache-entries/cache-entry.entity.js';
import { storageConfig, type StorageConfig } from '../config/config.js';
import { errorMessage } from '../jobs/queue-driver.js';
import { MetricsService } from '../observability/metrics.service.js';
import { BLOB_STORE, type BlobStore, type StoredBlob } from '../storage/blob-store.js';
import { CLOCK, type Clock } from './clock.js';
import { addFinding, emptyFinding, type StorageConsistencyReport } from './storage-consistency.js';

/** Job id of the repeated CLEAN_ORPHANS run. */
export const CLEAN_ORPHANS_JOB_ID = 'clean-orphans';

/** Objects classified per query, and live entries read per page. */
const CHUNK = 500;

export interface OrphanScanOptions {
  /** Overrides ORPHAN_GRACE_PERIOD_MS (the consistency check after a crash, when nothing is writing). */
  gracePeriodMs?: number;
  signal?: AbortSignal;
}

/**
 * Compares the blob store with cache_entries (the CLEAN_ORPHANS job, and the `cache:check` command):
 * - committed objects no row references (any status) and older than the grace period: deleted;
 * - temporary objects (writes that never finished) older than the grace period: deleted;
 * - live entries whose object is missing: marked `pending_destruction` (the destroy job removes them,
 *   the next pull fetches the content again).
 * The grace period (ORPHAN_GRACE_PERIOD_MS, 1 h) protects a fill between its commit and its row, and
 * writes in progress. `inspect()` reports the same without changing anything.
 */
@Injectable()
export class OrphanCleanupService {
  private readonly logger = new Logger(OrphanCleanupService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(storageConfig.KEY) private readonly storage: StorageConfig,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly metrics: MetricsService,
  ) {}

  /** The cleanup (CLEAN_ORPHANS). */
  async clean(options: OrphanScanOptions = {}): Promise<StorageConsistencyReport> {
    const started = performance.now();
    const timer = this.metrics.lifecycleRunDuration.startTimer({ job: 'orphans' });
    let report: StorageConsistencyReport;
    try {
      report = await this.scan(true, options);
    } catch (err) {
      this.metrics.lifecycleRuns.inc({ job: 'orphans', outcome: 'failure' });
      this.logger.error({ msg: 'orphan cleanup failed', job: 'orphans', error: errorMessage(err) });
      throw err;
    } finally {
      timer();
    }
    const repaired = report.repaired!;
    this.metrics.lifecycleRuns.inc({ job: 'orphans', outcome: 'success' });
    this.metrics.lifecycleEntries.inc({ job: 'orphans', action: 'marked' }, repaired.markedEntries);
    this.metrics.lifecycleObjects.inc({ job: 'orphans', kind: 'committed' }, repaired.deletedObjects);
    this.metrics.lifecycleObjects.inc({ job: 'orphans', kind: 'temporary' }, repaired.deletedTemporaryObjects);
    this.metrics.lifecycleBytes.inc({ job: 'orphans', action: 'deleted' }, repaired.deletedBytes);
    this.logger.log({
      msg: 'orphan cleanup finished',
      job: 'orphans',
      storedObjects: report.storedObjects,
      liveEntries: report.liveEntries,
      ...repaired,
      durationMs: Math.round(performance.now() - started),
    });
    return report;
  }

  /** The read-only comparison (the consistency check). */
  inspect(options: OrphanScanOptions = {}): Promise<StorageConsistencyReport> {
    return this.scan(false, options);
  }

  private async scan(fix: boolean, options: OrphanScanOptions): Promise<StorageConsistencyReport> {
    const gracePeriodMs = options.gracePeriodMs ?? this.storage.orphanGracePeriodMs;
    const cutoff = this.clock.now().getTime() - gracePeriodMs;
    const report: StorageConsistencyReport = {
      gracePeriodMs,
      storedObjects: 0,
      liveEntries: 0,
      entriesWithoutObject: emptyFinding(),
      objectsWithoutEntry: emptyFinding(),
      recentObjectsWithoutEntry: emptyFinding(),
      staleTemporaryObjects: emptyFinding(),
      recentTemporaryObjects: emptyFinding(),
      ...(fix ? { repaired: { markedEntries: 0, deletedObjects: 0, deletedBytes: 0, deletedTemporaryObjects: 0 } } : {}),
    };

    // 1. Committed objects: which ones no row references.
    const stored = new Set<string>();
    let chunk: StoredBlob[] = [];
    for await (const blob of this.blobs.list()) {
      stored.add(blob.digest);
      report.storedObjects += 1;
      chunk.push(blob);
      if (chunk.length >= CHUNK) {
        await this.classifyObjects(chunk, cutoff, stored, report);
        chunk = [];
        if (options.signal?.aborted) return report;
      }
    }
    if (chunk.length) await this.classifyObjects(chunk, cutoff, stored, report);

    // 2. Temporary objects of writes that never finished.
    for await (const temp of this.blobs.listTemporary()) {
      const finding = temp.modifiedAt.getTime() < cutoff ? report.staleTemporaryObjects : report.recentTemporaryObjects;
      addFinding(finding, `${temp.id} (modified ${temp.modifiedAt.toISOString()})`);
      if (fix && finding === report.staleTemporaryObjects) {
        await this.blobs.deleteTemporary(temp.id);
        report.repaired!.deletedTemporaryObjects += 1;
      }
    }
    if (options.signal?.aborted) return report;

    // 3. Live entries whose object is missing (stat confirms: it may have been committed after the listing).
    const confirmed = new Map<string, boolean>();
    let lastId = '0';
    for (;;) {
      const rows = (await this.dataSource.query(`SELECT id, digest FROM cache_entries WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3`, [
        CacheEntryStatus.DEFAULT,
        lastId,
        CHUNK,
      ])) as { id: string; digest: string }[];
      if (rows.length === 0) break;
      lastId = rows[rows.length - 1].id;
      report.liveEntries += rows.length;
      const lost: string[] = [];
      for (const row of rows) {
        if (stored.has(row.digest)) continue;
        let present = confirmed.get(row.digest);
        if (present === undefined) {
          present = (await this.blobs.stat(row.digest)) !== undefined;
          confirmed.set(row.digest, present);
        }
        if (!present) {
          lost.push(row.id);
          addFinding(report.entriesWithoutObject, `${row.digest} (entry ${row.id})`);
        }
      }
      if (fix && lost.length) {
        const [, marked] = (await this.dataSource.query(
          `UPDATE cache_entries SET status = $2, error_message = $3, updated_at = now() WHERE id = ANY($1::bigint[]) AND status = $4`,
          [lost, CacheEntryStatus.PENDING_DESTRUCTION, 'object missing from storage', CacheEntryStatus.DEFAULT],
        )) as [unknown, number];
        report.repaired!.markedEntries += marked;
      }
      if (rows.length < CHUNK || options.signal?.aborted) break;
    }
    return report;
  }

  /** Objects of one listing chunk that no row references: deleted (fix) when past the grace period. */
  private async classifyObjects(chunk: StoredBlob[], cutoff: number, stored: Set<string>, report: StorageConsistencyReport): Promise<void> {
    const referenced = new Set(
      (
        (await this.dataSource.query(`SELECT DISTINCT digest FROM cache_entries WHERE digest = ANY($1::text[])`, [chunk.map((b) => b.digest)])) as {
          digest: string;
        }[]
      ).map((r) => r.digest),
    );
    for (const blob of chunk) {
      if (referenced.has(blob.digest)) continue;
      const stale = blob.modifiedAt.getTime() < cutoff;
      addFinding(
        stale ? report.objectsWithoutEntry : report.recentObjectsWithoutEntry,
        `${blob.digest} (${blob.size} bytes, modified ${blob.modifiedAt.toISOString()})`,
        blob.size,
      );
      if (stale && report.repaired) {
        await this.blobs.delete(blob.digest);
        // A row created since the query now points at nothing: step 3 finds it (the digest is no longer "stored").
        stored.delete(blob.digest);
        report.repaired.deletedObjects += 1;
        report.repaired.deletedBytes += blob.size;
      }
    }
  }
}
