import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { errorMessage, JobName, QUEUE_DRIVER, type QueueDriver, type QueuedJob } from '../jobs/queue-driver.js';
import { CacheDestructionService, DESTROY_PENDING_JOB_ID } from './cache-destruction.service.js';
import { CleanupPolicyRunner, RUN_CLEANUP_POLICIES_JOB_ID } from './cleanup-policy-runner.service.js';
import { CLEAN_ORPHANS_JOB_ID, OrphanCleanupService } from './orphan-cleanup.service.js';
import { StorageQuotaService } from './storage-quota.service.js';

/** How often each lifecycle job runs. */
export const LIFECYCLE_SCHEDULE = {
  [JobName.DESTROY_PENDING]: 60 * 1000,
  [JobName.RUN_CLEANUP_POLICIES]: 10 * 60 * 1000,
  [JobName.CLEAN_ORPHANS]: 60 * 60 * 1000,
} as const;

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

  async onModuleInit(): Promise<void> {
    this.queue.registerHandler(JobName.DESTROY_PENDING, (job: QueuedJob) => this.destruction.destroyPending({ signal: job.signal }));
    this.queue.registerHandler(JobName.CLEAN_ORPHANS, (job: QueuedJob) => this.cleanOrphans(job.signal));
    this.queue.registerHandler(JobName.RUN_CLEANUP_POLICIES, (job: QueuedJob) => this.runCleanupPolicies(job.signal));
    await this.queue.repeat(JobName.DESTROY_PENDING, {}, LIFECYCLE_SCHEDULE[JobName.DESTROY_PENDING], DESTROY_PENDING_JOB_ID);
    await this.queue.repeat(JobName.RUN_CLEANUP_POLICIES, {}, LIFECYCLE_SCHEDULE[JobName.RUN_CLEANUP_POLICIES], RUN_CLEANUP_POLICIES_JOB_ID);
    await this.queue.repeat(JobName.CLEAN_ORPHANS, {}, LIFECYCLE_SCHEDULE[JobName.CLEAN_ORPHANS], CLEAN_ORPHANS_JOB_ID);
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
