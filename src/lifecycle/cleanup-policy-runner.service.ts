import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CacheEntryStatus } from '../cache-entries/cache-entry.entity.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { errorMessage } from '../jobs/queue-driver.js';
import { MetricsService } from '../observability/metrics.service.js';
import { CLOCK, type Clock } from './clock.js';
import { CleanupPolicyStatus, downloadCutoff, truncateFailureMessage } from './cleanup-policy.entity.js';

/** Job id of the repeated RUN_CLEANUP_POLICIES run. */
export const RUN_CLEANUP_POLICIES_JOB_ID = 'run-cleanup-policies';

/** Entries marked per statement. */
const MARK_BATCH_SIZE = 1000;
/** Policies run per job at most (the next run takes the rest). */
const POLICIES_PER_RUN = 100;
/** A policy `running` for longer than this was left by a worker that died. */
const STALE_RUN_MS = 60 * 60 * 1000;

export interface CleanupPolicyRun {
  policyId: number;
  groupId: number;
  status: CleanupPolicyStatus.SCHEDULED | CleanupPolicyStatus.FAILED;
  /** Entries marked for destruction and their bytes. */
  deletedEntries: number;
  deletedSize: number;
  durationSeconds: number;
  failureMessage?: string;
}

/**
 * The RUN_CLEANUP_POLICIES job: runs every enabled policy whose next_run_at has come (claimed with
 * `FOR UPDATE SKIP LOCKED`, so several workers share the work): the group's live entries last downloaded
 * more than keep_n_days_after_download days ago are marked `pending_destruction` in batches, the figures
 * are recorded on the policy, and the next run is scheduled one cadence later (after a failure too).
 */
@Injectable()
export class CleanupPolicyRunner {
  private readonly logger = new Logger(CleanupPolicyRunner.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly metrics: MetricsService,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  async runDuePolicies(signal?: AbortSignal): Promise<CleanupPolicyRun[]> {
    await this.failStaleRuns();
    const runs: CleanupPolicyRun[] = [];
    while (runs.length < POLICIES_PER_RUN && !signal?.aborted) {
      const claimed = await this.claimDuePolicy();
      if (!claimed) break;
      runs.push(await this.run(claimed));
    }
    return runs;
  }

  private async claimDuePolicy(): Promise<{ id: number; groupId: number; keepNDays: number } | undefined> {
    const [row] = (await this.dataSource.query(
      `WITH due AS (
         SELECT id FROM cleanup_policies
          WHERE enabled AND status IN ($1, $2) AND next_run_at <= $3
          ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED),
       claimed AS (
         UPDATE cleanup_policies p SET status = $4, updated_at = now()
           FROM due WHERE p.id = due.id
         RETURNING p.id, p.group_id, p.keep_n_days_after_download)
       SELECT id, group_id, keep_n_days_after_download FROM claimed`,
      [CleanupPolicyStatus.SCHEDULED, CleanupPolicyStatus.FAILED, this.clock.now(), CleanupPolicyStatus.RUNNING],
    )) as { id: number; group_id: number; keep_n_days_after_download: number }[];
    return row && { id: row.id, groupId: row.group_id, keepNDays: row.keep_n_days_after_download };
  }

  private async run(policy: { id: number; groupId: number; keepNDays: number }): Promise<CleanupPolicyRun> {
    const started = performance.now();
    const timer = this.metrics.lifecycleRunDuration.startTimer({ job: 'cleanup_policy' });
    const cutoff = downloadCutoff(this.clock.now(), policy.keepNDays);
    let entries = 0;
    let bytes = 0;
    try {
      for (;;) {
        const [batch] = (await this.dataSource.query(
          `WITH batch AS (
             SELECT id FROM cache_entries
              WHERE group_id = $1 AND status = $2 AND downloaded_at < $3
              ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED),
           marked AS (
             UPDATE cache_entries e SET status = $5, updated_at = now()
               FROM batch WHERE e.id = batch.id AND e.status = $2
             RETURNING e.size)
           SELECT count(*)::int AS entries, coalesce(sum(size), 0)::text AS bytes FROM marked`,
          [policy.groupId, CacheEntryStatus.DEFAULT, cutoff, MARK_BATCH_SIZE, CacheEntryStatus.PENDING_DESTRUCTION],
        )) as { entries: number; bytes: string }[];
        entries += batch.entries;
        bytes += Number(batch.bytes);
        if (batch.entries > 0) this.bus.changed(`cleanup policy ${policy.id}`);
        if (batch.entries < MARK_BATCH_SIZE) break;
      }
    } catch (err) {
      const durationSeconds = (performance.now() - started) / 1000;
      timer();
      const failureMessage = truncateFailureMessage(errorMessage(err));
      await this.dataSource.query(
        `UPDATE cleanup_policies
            SET status = $2, failure_message = $3, last_run_at = $4, last_run_duration = $5,
                next_run_at = $4::timestamptz + cadence * interval '1 day', updated_at = now()
          WHERE id = $1`,
        [policy.id, CleanupPolicyStatus.FAILED, failureMessage, this.clock.now(), durationSeconds],
      );
      this.metrics.lifecycleRuns.inc({ job: 'cleanup_policy', outcome: 'failure' });
      this.logger.error({ msg: 'cleanup policy run failed', job: 'cleanup_policy', policyId: policy.id, groupId: policy.groupId, error: failureMessage });
      return {
        policyId: policy.id,
        groupId: policy.groupId,
        status: CleanupPolicyStatus.FAILED,
        deletedEntries: entries,
        deletedSize: bytes,
        durationSeconds,
        failureMessage,
      };
    }
    const durationSeconds = (performance.now() - started) / 1000;
    timer();
    await this.dataSource.query(
      `UPDATE cleanup_policies
          SET status = $2, failure_message = NULL, last_run_at = $3, last_run_deleted_entries_count = $4,
              last_run_deleted_size = $5, last_run_duration = $6,
              next_run_at = $3::timestamptz + cadence * interval '1 day', updated_at = now()
        WHERE id = $1`,
      [policy.id, CleanupPolicyStatus.SCHEDULED, this.clock.now(), entries, bytes, durationSeconds],
    );
    this.metrics.lifecycleRuns.inc({ job: 'cleanup_policy', outcome: 'success' });
    this.metrics.lifecycleEntries.inc({ job: 'cleanup_policy', action: 'marked' }, entries);
    this.metrics.lifecycleBytes.inc({ job: 'cleanup_policy', action: 'marked' }, bytes);
    this.logger.log({
      msg: 'cleanup policy run finished',
      job: 'cleanup_policy',
      policyId: policy.id,
      groupId: policy.groupId,
      keepNDaysAfterDownload: policy.keepNDays,
      entries,
      bytes,
      durationMs: Math.round(durationSeconds * 1000),
    });
    return {
      policyId: policy.id,
      groupId: policy.groupId,
      status: CleanupPolicyStatus.SCHEDULED,
      deletedEntries: entries,
      deletedSize: bytes,
      durationSeconds,
    };
  }

  /** Runs interrupted by a dead worker are recorded as failed (they run again at once: next_run_at has passed). */
  private async failStaleRuns(): Promise<void> {
    await this.dataSource.query(
      `UPDATE cleanup_policies SET status = $1, failure_message = $2, updated_at = now()
        WHERE status = $3 AND updated_at < now() - $4::double precision * interval '1 millisecond'`,
      [CleanupPolicyStatus.FAILED, 'the run was interrupted (its worker stopped)', CleanupPolicyStatus.RUNNING, STALE_RUN_MS],
    );
  }
}
