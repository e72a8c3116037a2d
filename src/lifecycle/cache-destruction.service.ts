import { Inject, Injectable, Logger } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { CacheEntryStatus } from '../cache-entries/cache-entry.entity.js';
import { errorMessage } from '../jobs/queue-driver.js';
import { MetricsService } from '../observability/metrics.service.js';
import { BLOB_STORE, type BlobStore } from '../storage/blob-store.js';

/** Entries claimed per batch. */
export const DESTROY_BATCH_SIZE = 500;
/** A failed destruction (`error`) is retried after this long. */
export const DESTROY_RETRY_AFTER_MS = 15 * 60 * 1000;
/** Entries claimed (`processing`) longer ago than this belong to a worker that died: they are claimed again. */
export const DESTROY_RECLAIM_AFTER_MS = 10 * 60 * 1000;
/** Objects deleted at the same time. */
const DELETE_CONCURRENCY = 8;
/**
 * A pending row that another transaction held at claim time (a download-time flush, another run's
 * claim) is skipped, not waited for: the run looks again this many times, this far apart, before it
 * leaves such rows to the next run (a minute later).
 */
const SKIPPED_ROW_PASSES = 5;
const SKIPPED_ROW_PAUSE_MS = 200;
/** First key of the advisory locks taken per digest (the second is hashtext(digest)). */
const DIGEST_LOCK_NAMESPACE = 1_818_847_589;

export interface DestroyPendingOptions {
  batchSize?: number;
  retryAfterMs?: number;
  reclaimAfterMs?: number;
  /** Stops between batches once aborted (the queue aborts jobs when the process stops). */
  signal?: AbortSignal;
}

export interface DestructionReport {
  /** Rows deleted. */
  entries: number;
  /** Objects deleted from the blob store (each by exactly one run). */
  objects: number;
  /** Bytes of those objects. */
  bytes: number;
  /** Entries left in `error` because their object could not be deleted (retried later). */
  failed: number;
  /** Entries handed back to `pending_destruction`: failed ones due for a retry, and claims of dead workers. */
  requeued: number;
}

interface ClaimedEntry {
  id: number;
  digest: string;
  size: number;
}

interface OwnedObject {
  digest: string;
  size: number;
  /** The one claimed row kept until the object is gone (the retry handle if deleting it fails). */
  entryId: number;
}

/**
 * The DESTROY_PENDING job: removes cache entries marked `pending_destruction` (purges, cleanup policies,
 * quota evictions, lost objects), and their object once no other row references the digest.
 *
 * Per batch, without ever holding a transaction across storage I/O:
 * 1. claim: one statement moves up to `batchSize` rows to `processing` (`FOR UPDATE SKIP LOCKED`), so
 *    concurrent runs (several workers) never claim the same row;
 * 2. decide, in a short transaction serialised per digest (advisory locks, taken in a fixed order): a
 *    claimed row whose digest still has any other row (a live entry, or rows another run will handle)
 *    is deleted now; for a digest with no other row this run becomes the object's only owner and keeps
 *    one claimed row as its handle, deleting the rest;
 * 3. delete the owned objects (outside any transaction), then the handle rows; a failure leaves the
 *    handle row in `error` with the message, retried after `retryAfterMs`. Right before each delete, a
 *    short transaction under the digest's lock looks again: a row created since step 2 (a fill that
 *    found or stored the object and recorded its entry, say a pull right after a purge) keeps the object.
 * A fill that records its row between that look and the delete is caught afterwards: live rows whose
 * object is gone are marked for destruction (the next pull fetches the content again).
 */
@Injectable()
export class CacheDestructionService {
  private readonly logger = new Logger(CacheDestructionService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    private readonly metrics: MetricsService,
  ) {}

  async destroyPending(options: DestroyPendingOptions = {}): Promise<DestructionReport> {
    const batchSize = options.batchSize ?? DESTROY_BATCH_SIZE;
    const started = performance.now();
    const report: DestructionReport = { entries: 0, objects: 0, bytes: 0, failed: 0, requeued: 0 };
    const timer = this.metrics.lifecycleRunDuration.startTimer({ job: 'destroy' });
    try {
      report.requeued = await this.requeueStale(options.retryAfterMs ?? DESTROY_RETRY_AFTER_MS, options.reclaimAfterMs ?? DESTROY_RECLAIM_AFTER_MS);
      await this.destroyClaimable(batchSize, report, options.signal);
      for (let pass = 0; pass < SKIPPED_ROW_PASSES && !options.signal?.aborted && (await this.anyPending()); pass++) {
        await sleep(SKIPPED_ROW_PAUSE_MS);
        await this.destroyClaimable(batchSize, report, options.signal);
      }
    } catch (err) {
      this.metrics.lifecycleRuns.inc({ job: 'destroy', outcome: 'failure' });
      this.logger.error({ msg: 'destroy run failed', job: 'destroy', ...report, error: errorMessage(err) });
      throw err;
    } finally {
      timer();
    }
    this.metrics.lifecycleRuns.inc({ job: 'destroy', outcome: 'success' });
    this.metrics.lifecycleEntries.inc({ job: 'destroy', action: 'deleted' }, report.entries);
    this.metrics.lifecycleObjects.inc({ job: 'destroy', kind: 'committed' }, report.objects);
    this.metrics.lifecycleBytes.inc({ job: 'destroy', action: 'deleted' }, report.bytes);
    // Every run is logged; the ones with nothing to do (most minutes) at debug level.
    const line = { msg: 'destroy run finished', job: 'destroy', ...report, durationMs: Math.round(performance.now() - started) };
    if (report.entries || report.failed || report.requeued) this.logger.log(line);
    else this.logger.debug(line);
    return report;
  }

  /** Claims and destroys batches until a claim comes back short (no pending row left that nobody holds). */
  private async destroyClaimable(batchSize: number, report: DestructionReport, signal?: AbortSignal): Promise<void> {
    while (!signal?.aborted) {
      const claimed = await this.claim(batchSize);
      if (claimed.length > 0) await this.destroyBatch(claimed, report);
      if (claimed.length < batchSize) return;
    }
  }

  private async anyPending(): Promise<boolean> {
    const [{ pending }] = (await this.dataSource.query(`SELECT EXISTS (SELECT 1 FROM cache_entries WHERE status = $1) AS pending`, [
      CacheEntryStatus.PENDING_DESTRUCTION,
    ])) as { pending: boolean }[];
    return pending;
  }

  /** Failed destructions due for a retry, and rows claimed by a worker that died, go back to pending. */
  private async requeueStale(retryAfterMs: number, reclaimAfterMs: number): Promise<number> {
    const [{ count }] = (await this.dataSource.query(
      `WITH stale AS (
         SELECT id FROM cache_entries
          WHERE status IN ($1, $2)
            AND updated_at <= now() - (CASE WHEN status = $1 THEN $3 ELSE $4 END)::double precision * interval '1 millisecond'
          FOR UPDATE SKIP LOCKED),
       requeued AS (
         UPDATE cache_entries e SET status = $5, updated_at = now()
           FROM stale WHERE e.id = stale.id RETURNING e.id)
       SELECT count(*)::int AS count FROM requeued`,
      [CacheEntryStatus.ERROR, CacheEntryStatus.PROCESSING, retryAfterMs, reclaimAfterMs, CacheEntryStatus.PENDING_DESTRUCTION],
    )) as { count: number }[];
    return count;
  }

  /** Moves up to `limit` pending rows to `processing` for this run (rows other runs hold are skipped). */
  private async claim(limit: number): Promise<ClaimedEntry[]> {
    const rows = (await this.dataSource.query(
      `WITH batch AS (
         SELECT id FROM cache_entries WHERE status = $1 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED),
       claimed AS (
         UPDATE cache_entries e SET status = $2, updated_at = now()
           FROM batch WHERE e.id = batch.id AND e.status = $1
         RETURNING e.id, e.digest, e.size)
       SELECT id, digest, size FROM claimed`,
      [CacheEntryStatus.PENDING_DESTRUCTION, CacheEntryStatus.PROCESSING, limit],
    )) as { id: string; digest: string; size: string }[];
    return rows.map((r) => ({ id: Number(r.id), digest: r.digest, size: Number(r.size) }));
  }

  private async destroyBatch(claimed: ClaimedEntry[], report: DestructionReport): Promise<void> {
    const owned = await this.settleRows(claimed, report);
    if (owned.length === 0) return;

    const deleted: OwnedObject[] = [];
    const failed: { object: OwnedObject; message: string }[] = [];
    await forEachConcurrently(owned, DELETE_CONCURRENCY, async (object) => {
      if (await this.keptForNewEntry(object, report)) return;
      try {
        await this.blobs.delete(object.digest);
        deleted.push(object);
      } catch (err) {
        failed.push({ object, message: `could not delete the object: ${errorMessage(err)}`.slice(0, 1000) });
      }
    });

    if (deleted.length) {
      const [, removed] = (await this.dataSource.query(`DELETE FROM cache_entries WHERE id = ANY($1::bigint[]) AND status = $2`, [
        deleted.map((o) => String(o.entryId)),
        CacheEntryStatus.PROCESSING,
      ])) as [unknown, number];
      report.entries += removed;
      report.objects += deleted.length;
      report.bytes += deleted.reduce((sum, o) => sum + o.size, 0);
      await this.markLiveEntriesWithoutObject(deleted.map((o) => o.digest));
    }
    if (failed.length) {
      await this.dataSource.query(
        `UPDATE cache_entries e SET status = $3, error_message = f.message, updated_at = now()
           FROM unnest($1::bigint[], $2::text[]) AS f(id, message)
          WHERE e.id = f.id AND e.status = $4`,
        [failed.map((f) => String(f.object.entryId)), failed.map((f) => f.message), CacheEntryStatus.ERROR, CacheEntryStatus.PROCESSING],
      );
      report.failed += failed.length;
      for (const { object, message } of failed) {
        this.logger.warn({
          msg: 'destroy: object deletion failed, retried later',
          job: 'destroy',
          digest: object.digest,
          entryId: object.entryId,
          error: message,
        });
      }
    }
  }

  /**
   * Step 2: deletes the claimed rows whose digest is referenced by any other row, and picks the objects
   * this run owns (one kept row each). Serialised per digest, so two runs deciding about the same digest
   * see each other's deletions: exactly one of them ends up owning the object.
   */
  private async settleRows(claimed: ClaimedEntry[], report: DestructionReport): Promise<OwnedObject[]> {
    const digests = [...new Set(claimed.map((e) => e.digest))].sort();
    const ids = claimed.map((e) => String(e.id));
    return this.dataSource.transaction(async (manager) => {
      await manager.query(`SELECT pg_advisory_xact_lock($1, k) FROM (SELECT DISTINCT hashtext(d) AS k FROM unnest($2::text[]) AS d ORDER BY 1) AS keys`, [
        DIGEST_LOCK_NAMESPACE,
        digests,
      ]);
      const referenced = new Set(
        (
          (await manager.query(`SELECT DISTINCT digest FROM cache_entries WHERE digest = ANY($1::text[]) AND NOT (id = ANY($2::bigint[]))`, [
            digests,
            ids,
          ])) as { digest: string }[]
        ).map((r) => r.digest),
      );
      const owned = new Map<string, OwnedObject>();
      const drop: string[] = [];
      for (const entry of claimed) {
        if (referenced.has(entry.digest) || owned.has(entry.digest)) {
          drop.push(String(entry.id));
        } else {
          owned.set(entry.digest, { digest: entry.digest, size: entry.size, entryId: entry.id });
        }
      }
      if (drop.length) report.entries += await deleteClaimedRows(manager, drop);
      return [...owned.values()];
    });
  }

  /**
   * Step 3's last look before an owned object is deleted: a row that references the digest since step 2
   * decided (a fill recorded its entry; the object it found or stored is this one) keeps the object, and
   * the handle row is deleted, as step 2 would have done. Serialised per digest like step 2, so a run that
   * claimed such a row and has not decided yet finds no handle left and owns the object itself.
   */
  private async keptForNewEntry(object: OwnedObject, report: DestructionReport): Promise<boolean> {
    const kept = await this.dataSource.transaction(async (manager) => {
      await manager.query(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, [DIGEST_LOCK_NAMESPACE, object.digest]);
      const [{ referenced }] = (await manager.query(`SELECT EXISTS (SELECT 1 FROM cache_entries WHERE digest = $1 AND id <> $2) AS referenced`, [
        object.digest,
        String(object.entryId),
      ])) as { referenced: boolean }[];
      if (!referenced) return false;
      report.entries += await deleteClaimedRows(manager, [String(object.entryId)]);
      return true;
    });
    if (kept) {
      this.logger.log({ msg: 'destroy: object kept, an entry created since the run claimed it references it', job: 'destroy', digest: object.digest });
    }
    return kept;
  }

  /**
   * A fill may have linked one of these digests to a new live row (its object existed) between the last
   * look (keptForNewEntry) and the object's deletion: such rows would point at nothing. They are handed to
   * the next run, so the next pull fetches the content again instead of failing.
   */
  private async markLiveEntriesWithoutObject(digests: string[]): Promise<void> {
    const rows = (await this.dataSource.query(`SELECT id, digest FROM cache_entries WHERE digest = ANY($1::text[]) AND status = $2`, [
      digests,
      CacheEntryStatus.DEFAULT,
    ])) as { id: string; digest: string }[];
    const lost: string[] = [];
    for (const row of rows) {
      if (!(await this.blobs.stat(row.digest))) lost.push(row.id);
    }
    if (lost.length === 0) return;
    await this.dataSource.query(`UPDATE cache_entries SET status = $2, error_message = $3, updated_at = now() WHERE id = ANY($1::bigint[]) AND status = $4`, [
      lost,
      CacheEntryStatus.PENDING_DESTRUCTION,
      'object deleted while the entry was being created',
      CacheEntryStatus.DEFAULT,
    ]);
    this.logger.warn({ msg: 'destroy: live entries lost their object to a concurrent destruction, marked for destruction', job: 'destroy', entryIds: lost });
  }
}

/** Runs `task` on every item, at most `concurrency` at a time. */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Deletes these rows if this run still holds them (status processing); how many it deleted. */
async function deleteClaimedRows(manager: EntityManager, ids: string[]): Promise<number> {
  const [, removed] = (await manager.query(`DELETE FROM cache_entries WHERE id = ANY($1::bigint[]) AND status = $2`, [ids, CacheEntryStatus.PROCESSING])) as [
    unknown,
    number,
  ];
  return removed;
}
