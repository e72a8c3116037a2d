/**
 * The background job abstraction. Services enqueue through QUEUE_DRIVER; the module that owns a job
 * registers its handler (in its constructor or onModuleInit), and JobsModule calls start() once every
 * module has done so (OnApplicationBootstrap). Two drivers implement it: bullmq (Redis, shared by every
 * replica and worker) and inline (in-process, for the zero-setup default). Both pass queue-driver.contract.ts.
 *
 * Startup fails on a job name without a handler: start() rejects when a name that was used before it
 * (add() or repeat()) or listed in `requireHandlers` has no registered handler, and once started, add()
 * and repeat() throw straight away for such a name. The worker process lists every JobName, since it
 * consumes jobs that other processes enqueue.
 */

export const QUEUE_DRIVER = 'QUEUE_DRIVER';

/** Queues group jobs that share a worker pool; each queue gets its own concurrency. */
export enum QueueName {
  CACHE = 'cache',
  LIFECYCLE = 'lifecycle',
}

export enum JobName {
  FILL_CACHE_ENTRY = 'fill-cache-entry',
  MARK_FOR_DESTRUCTION = 'mark-for-destruction',
  DESTROY_PENDING = 'destroy-pending',
  CLEAN_ORPHANS = 'clean-orphans',
  RUN_CLEANUP_POLICIES = 'run-cleanup-policies',
  PREFETCH_IMAGE = 'prefetch-image',
}

/** Job id of DESTROY_PENDING (the repeat and every one-off enqueue share it, so runs do not pile up). */
export const DESTROY_PENDING_JOB_ID = 'destroy-pending';

/** Which queue carries each job. */
export const JOB_QUEUE: Readonly<Record<JobName, QueueName>> = {
  [JobName.FILL_CACHE_ENTRY]: QueueName.CACHE,
  [JobName.MARK_FOR_DESTRUCTION]: QueueName.LIFECYCLE,
  [JobName.DESTROY_PENDING]: QueueName.LIFECYCLE,
  [JobName.CLEAN_ORPHANS]: QueueName.LIFECYCLE,
  [JobName.RUN_CLEANUP_POLICIES]: QueueName.LIFECYCLE,
  [JobName.PREFETCH_IMAGE]: QueueName.CACHE,
};

export interface AddJobOptions {
  /** De-duplication key: while a job with this id is waiting, active or delayed, adding it again is a no-op. No ':' and not a plain integer. */
  jobId?: string;
  /** Run no earlier than this many milliseconds from now. */
  delayMs?: number;
  /** Total tries, the first included (default 3). */
  attempts?: number;
  /** Exponential backoff base: the n-th retry waits backoffMs * 2^(n-1) (default 1000). */
  backoffMs?: number;
}

export interface EnqueuedJob {
  id: string;
  /** True when a job with the same id was already waiting, active or delayed (nothing was added). */
  deduplicated: boolean;
}

/** What a handler receives. `data` went through JSON (both drivers), so pass plain values only. */
export interface QueuedJob<T = unknown> {
  id: string;
  name: JobName;
  data: T;
  /** 1 for the first try, 2 for the first retry, ... */
  attempt: number;
  /** Aborted when the process stops and the job did not finish within the drain timeout. */
  signal: AbortSignal;
}

export type JobHandler<T = unknown> = (job: QueuedJob<T>) => Promise<unknown>;

/** Jobs by state, for the queue-depth gauge. */
export interface JobCounts {
  waiting: number;
  active: number;
  /** Waiting for their delay or for a retry's backoff. */
  delayed: number;
  /** bullmq: failed jobs kept in Redis (the last 5000 per queue); inline: failures since the process started. */
  failed: number;
  /** bullmq: completed jobs kept in Redis (the last 1000 per queue); inline: completions since the process started. */
  completed: number;
}

/** A job that used up its attempts. */
export interface JobFailure {
  id: string;
  name: JobName;
  data: unknown;
  attempts: number;
  error: string;
  failedAt: Date;
}

export interface StartOptions {
  /** Jobs of one queue processed at the same time by this process. */
  concurrency: number;
  /** Names that must have a handler even if this process has not used them (the worker passes every JobName). */
  requireHandlers?: readonly JobName[];
}

export interface QueueDriver {
  add<T>(name: JobName, data: T, opts?: AddJobOptions): Promise<EnqueuedJob>;
  /** Declares a job that runs every `everyMs`; declaring the same jobId again replaces it. */
  repeat<T>(name: JobName, data: T, everyMs: number, jobId: string): Promise<void>;
  registerHandler<T>(name: JobName, handler: JobHandler<T>): void;
  /** Starts processing (only in processes that run jobs). Rejects when a used or required name has no handler. */
  start(options: StartOptions): Promise<void>;
  /** Stops taking jobs, waits for active ones (up to the driver's drain timeout), releases connections. Idempotent. */
  stop(): Promise<void>;
  counts(): Promise<JobCounts>;
  /** Most recent failures first. */
  failures(limit: number): Promise<JobFailure[]>;
  /** Readiness: resolves when the queue backend answers. */
  check(): Promise<void>;
}

export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_BACKOFF_MS = 1000;

/** BullMQ's rules for custom ids, enforced by both drivers so code that works inline works on Redis. */
export function assertValidJobId(jobId: string): void {
  if (typeof jobId !== 'string' || jobId.length === 0) throw new Error('job id must be a non-empty string');
  if (jobId.includes(':')) throw new Error(`job id "${jobId}" must not contain ':' (encode digests as sha256-<hex>)`);
  if (/^\d+$/.test(jobId)) throw new Error(`job id "${jobId}" must not be a plain integer`);
}

export function assertValidAddOptions(opts: AddJobOptions): void {
  if (opts.jobId !== undefined) assertValidJobId(opts.jobId);
  for (const key of ['delayMs', 'backoffMs'] as const) {
    const v = opts[key];
    if (v !== undefined && (!Number.isFinite(v) || v < 0)) throw new Error(`${key} must be a number >= 0, got ${v}`);
  }
  if (opts.attempts !== undefined && (!Number.isInteger(opts.attempts) || opts.attempts < 1)) {
    throw new Error(`attempts must be a whole number >= 1, got ${opts.attempts}`);
  }
}

/** The n-th retry (attemptsMade = n) waits backoffMs * 2^(n-1): the same formula as BullMQ's exponential backoff. */
export function retryDelayMs(backoffMs: number, attemptsMade: number): number {
  return Math.round(2 ** (attemptsMade - 1) * backoffMs);
}

/** Names used or required that have no handler; start() fails with this message. */
export function missingHandlersError(missing: readonly JobName[]): Error {
  return new Error(
    `no handler registered for job ${missing.map((n) => `"${n}"`).join(', ')}: ` +
      'register it (QueueDriver.registerHandler) in the owning module before the application bootstraps',
  );
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
