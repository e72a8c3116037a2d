import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DESTROY_PENDING_JOB_ID, errorMessage, JobName, QUEUE_DRIVER, type QueueDriver, type QueuedJob } from '../jobs/queue-driver.js';
import { CacheDestructionService } from './cache-destruction.service.js';
import { CleanupPolicyRunner, RUN_CLEANUP_POLICIES_JOB_ID } from './cleanup-policy-runner.service.js';
import { CLEAN_ORPHANS_JOB_ID, OrphanCleanupService } from './orphan-cleanup.service.js';
import { StorageQuotaService } from './storage-quota.service.js';

/** The lifecycle jobs: how often each runs, under which repeat (and de-duplication) id. */
export const LIFECYCLE_SCHEDULE: readonly { name: JobName; everyMs: number; jobId: string }[] = [
  { name: JobName.DESTROY_PENDING, everyMs: 60 * 1000, jobId: DESTROY_PENDING_JOB_ID },
  { name: JobName.RUN_CLEANUP_POLICIES, everyMs: 10 * 60 * 1000, jobId: RUN_CLEANUP_POLICIES_JOB_ID },
  { name: JobName.CLEAN_ORPHANS, everyMs: 60 * 60 * 1000, jobId: CLEAN_ORPHANS_JOB_ID },
];

/**
 * Declares the lifecycle jobs and their schedules, and hands each to its service:
 * - DESTROY_PENDING every minute (purges, policies, evictions and lost objects only mark entries);
 * - RUN_CLEANUP_POLICIES every 10 minutes: the due cleanup policies, then the storage quota of every
 *   group over it;
 * - CLEAN_ORPHANS every hour.
 * A run that marked entries enqueues DESTROY_PENDING at once. All three are idempotent and safe to run
 * in several workers at the same time.
 */
@Injectable()
export class LifecycleJobs implements OnModuleInit {
  private readonly logger = new Logger(LifecycleJobs.name);

  constructor(
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    private readonly destruction: CacheDestructionService,
    private readonly orphans: OrphanCleanupService,
    private readonly policies: CleanupPolicyRunner,
    private readonly quota: StorageQuotaService,
  ) {}

  onModuleInit(): void {
    this.queue.registerHandler(JobName.DESTROY_PENDING, (job: QueuedJob) => this.destruction.destroyPending({ signal: job.signal }));
    this.queue.registerHandler(JobName.CLEAN_ORPHANS, (job: QueuedJob) => this.cleanOrphans(job.signal));
    this.queue.registerHandler(JobName.RUN_CLEANUP_POLICIES, (job: QueuedJob) => this.runCleanupPolicies(job.signal));
    // Declared without holding up the boot: with BullMQ the declaration waits for Redis, and an
    // unreachable Redis must fail the boot in JobsModule's check (one clear line), not hang it here.
    for (const { name, everyMs, jobId } of LIFECYCLE_SCHEDULE) {
      this.queue
        .repeat(name, {}, everyMs, jobId)
        .catch((err: unknown) => this.logger.error({ msg: 'could not schedule a lifecycle job', job: name, error: errorMessage(err) }));
    }
  }

  /** Enqueues a destroy run now (deduplicated with a run already waiting). */
  async enqueueDestroy(): Promise<void> {
    try {
      await this.queue.add(JobName.DESTROY_PENDING, {}, { jobId: DESTROY_PENDING_JOB_ID });
    } catch (err) {
      this.logger.warn({ msg: 'could not enqueue the destroy job; the repeated run picks the entries up', error: errorMessage(err) });
    }
  }

  private async cleanOrphans(signal: AbortSignal): Promise<object> {
    const report = await this.orphans.clean({ signal });
    if (report.repaired!.markedEntries) await this.enqueueDestroy();
    return report.repaired!;
  }

  private async runCleanupPolicies(signal: AbortSignal): Promise<object> {
    const runs = await this.policies.runDuePolicies(signal);
    const evictions = await this.quota.enforceAll();
    const marked = runs.reduce((sum, r) => sum + r.deletedEntries, 0);
    // enforce() enqueues the destroy run for its own evictions.
    if (marked) await this.enqueueDestroy();
    return { policies: runs.length, markedEntries: marked, evictedEntries: evictions.reduce((sum, e) => sum + e.evictedEntries, 0) };
  }
}
