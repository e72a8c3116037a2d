import { Logger } from '@nestjs/common';
import { Job, JobsOptions, JobState, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { BullmqConnectionOptions, RedisConnections } from '../redis/redis-connections.js';
import {
  AddJobOptions,
  assertValidAddOptions,
  assertValidJobId,
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  EnqueuedJob,
  JOB_QUEUE,
  JobCounts,
  JobFailure,
  JobHandler,
  JobName,
  missingHandlersError,
  QueueDriver,
  QueueName,
  StartOptions,
} from './queue-driver.js';

export interface BullmqQueueDriverOptions {
  /** The RedisModule's connections: BullMQ opens its own from their settings; the probe uses the command connection. */
  redis: RedisConnections;
  /** Redis key prefix (default "bull"); tests use a random one so runs never share keys. */
  prefix?: string;
  /** How long stop() waits for active jobs before aborting them (default 10 s). */
  drainTimeoutMs?: number;
}

/** Finished jobs kept in Redis (never `true`: removing at once races with waitUntilFinished). */
const KEEP_COMPLETED = { count: 1000 };
const KEEP_FAILED = { count: 5000 };

const PENDING_STATES: ReadonlySet<JobState | 'unknown'> = new Set<JobState | 'unknown'>(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/** How long check() waits for the probe connection to (re)connect. */
const PROBE_CONNECT_WAIT_MS = 1000;

/** Grace after aborting jobs on a drain timeout, for handlers that honour the signal to fail their job cleanly. */
const ABORT_GRACE_MS = 2000;

/**
 * BullMQ on Redis: one Queue per QueueName (every process, to enqueue) and one Worker per QueueName that
 * has a handler (only in processes that run jobs, from start()). Jobs retry with exponential backoff;
 * finished jobs are kept by count for counts() and failures().
 *
 * De-duplication by job id: a job that is waiting, active or delayed is left alone; a finished one
 * (kept in Redis under the same id) is removed so the id can run again. BullMQ itself ignores an add
 * whose id exists, and two processes adding the same new id in the same millisecond may both be told
 * `deduplicated: false`; either way one job exists and runs once.
 */
export class BullmqQueueDriver implements QueueDriver {
  private readonly logger = new Logger(BullmqQueueDriver.name);
  private readonly prefix: string;
  private readonly drainTimeoutMs: number;
  private readonly queues = new Map<QueueName, Queue>();
  private readonly workers: Worker[] = [];
  private readonly handlers = new Map<JobName, JobHandler>();
  private readonly used = new Set<JobName>();
  /** Readiness probe: the shared command connection has no offline queue, so a ping fails fast while Redis is down. */
  private readonly probe: Redis;
  private readonly connection: BullmqConnectionOptions;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: BullmqQueueDriverOptions) {
    this.prefix = options.prefix ?? 'bull';
    this.drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
    const connection = options.redis.bullmq();
    const probe = options.redis.commands();
    if (!connection || !probe) throw new Error('QUEUE_DRIVER=bullmq needs REDIS_URL');
    this.connection = connection;
    this.probe = probe;
    for (const name of Object.values(QueueName)) {
      const queue = new Queue(name, { connection: { ...this.connection }, prefix: this.prefix });
      queue.on('error', (err) => this.logger.error(`queue ${name}: ${err.message}`));
      this.queues.set(name, queue);
    }
  }

  registerHandler<T>(name: JobName, handler: JobHandler<T>): void {
    if (this.handlers.has(name)) throw new Error(`a handler for job "${name}" is already registered`);
    this.handlers.set(name, handler as JobHandler);
  }

  async add<T>(name: JobName, data: T, opts: AddJobOptions = {}): Promise<EnqueuedJob> {
    this.assertUsable(name);
    assertValidAddOptions(opts);
    this.used.add(name);
    const queue = this.queueFor(name);
    const jobOptions = this.jobOptions(opts);
    if (opts.jobId === undefined) {
      const job = await queue.add(name, data ?? null, jobOptions);
      return { id: job.id!, deduplicated: false };
    }

    const id = opts.jobId;
    for (let round = 1; ; round++) {
      const state = await queue.getJobState(id);
      if (PENDING_STATES.has(state)) return { id, deduplicated: true };
      if (state === 'completed' || state === 'failed') await queue.remove(id);

      const added = await queue.add(name, data ?? null, { ...jobOptions, jobId: id });
      const stored = await queue.getJob(id);
      // Our job is the stored one (or it already ran and was trimmed): it was added.
      if (!stored || stored.timestamp === added.timestamp) return { id, deduplicated: false };
      // Someone else's: a concurrent add won, or a finished job came back between remove and add.
      if (PENDING_STATES.has(await stored.getState())) return { id, deduplicated: true };
      if (round === 3) throw new Error(`could not enqueue job ${name} ${id}: a finished job with that id keeps reappearing`);
    }
  }

  async repeat<T>(name: JobName, data: T, everyMs: number, jobId: string): Promise<void> {
    this.assertUsable(name);
    assertValidJobId(jobId);
    if (!Number.isFinite(everyMs) || everyMs <= 0) throw new Error(`everyMs must be > 0, got ${everyMs}`);
    this.used.add(name);
    const { attempts, backoff, removeOnComplete, removeOnFail } = this.jobOptions({});
    await this.queueFor(name).upsertJobScheduler(
      jobId,
      { every: everyMs },
      { name, data: data ?? null, opts: { attempts, backoff, removeOnComplete, removeOnFail } },
    );
  }

  async start(options: StartOptions): Promise<void> {
    if (this.started) throw new Error('the queue is already started');
    if (this.stopping) throw new Error('the queue is stopped');
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new Error(`concurrency must be a whole number >= 1, got ${options.concurrency}`);
    }
    const required = new Set<JobName>([...this.used, ...(options.requireHandlers ?? [])]);
    const missing = [...required].filter((n) => !this.handlers.has(n));
    if (missing.length) throw missingHandlersError(missing);
    this.started = true;

    const handled = new Set([...this.handlers.keys()].map((n) => JOB_QUEUE[n]));
    for (const queueName of handled) {
      const worker = new Worker(queueName, (job, _token, signal) => this.process(job, signal), {
        connection: { ...this.connection, maxRetriesPerRequest: null },
        prefix: this.prefix,
        concurrency: options.concurrency,
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      });
      worker.on('error', (err) => this.logger.error(`worker ${queueName}: ${err.message}`));
      worker.on('failed', (job, err) => {
        if (!job) return;
        const attempts = job.opts.attempts ?? 1;
        if (job.attemptsMade >= attempts || err instanceof UnrecoverableError) {
          this.logger.warn(`job ${job.name} ${job.id} failed after ${job.attemptsMade} attempt(s): ${err.message}`);
        } else {
          this.logger.debug(`job ${job.name} ${job.id} failed (attempt ${job.attemptsMade}/${attempts}), will retry: ${err.message}`);
        }
      });
      this.workers.push(worker);
    }
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  async counts(): Promise<JobCounts> {
    const total: JobCounts = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 };
    for (const queue of this.queues.values()) {
      const c = await queue.getJobCounts('waiting', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed', 'completed');
      total.waiting += (c.waiting ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0);
      total.active += c.active ?? 0;
      total.delayed += c.delayed ?? 0;
      total.failed += c.failed ?? 0;
      total.completed += c.completed ?? 0;
    }
    return total;
  }

  async failures(limit: number): Promise<JobFailure[]> {
    if (limit <= 0) return [];
    const jobs: Job[] = [];
    for (const queue of this.queues.values()) jobs.push(...(await queue.getFailed(0, limit - 1)));
    return jobs
      .filter((job) => job !== undefined && job !== null)
      .sort((a, b) => (b.finishedOn ?? b.timestamp) - (a.finishedOn ?? a.timestamp))
      .slice(0, limit)
      .map((job) => ({
        id: job.id!,
        name: job.name as JobName,
        data: job.data as unknown,
        attempts: job.attemptsMade,
        error: job.failedReason,
        failedAt: new Date(job.finishedOn ?? job.timestamp),
      }));
  }

  async check(): Promise<void> {
    if (this.stopping) throw new Error('the queue is stopped');
    await this.probeConnected();
    const answer = await this.probe.ping();
    if (answer !== 'PONG') throw new Error(`redis answered ${String(answer)} to PING`);
  }

  /** Right after boot or while reconnecting, give the probe connection a moment before calling Redis down. */
  private async probeConnected(): Promise<void> {
    if (this.probe.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.probe.off('ready', onReady);
        reject(new Error(`not connected to redis (${this.probe.status})`));
      }, PROBE_CONNECT_WAIT_MS);
      this.probe.once('ready', onReady);
    });
  }

  private async process(job: Job, signal?: AbortSignal): Promise<unknown> {
    const name = job.name as JobName;
    const handler = this.handlers.get(name);
    if (!handler) throw new UnrecoverableError(`no handler registered for job "${job.name}" in this process`);
    return handler({
      id: job.id!,
      name,
      data: job.data,
      attempt: job.attemptsMade + 1,
      signal: signal ?? new AbortController().signal,
    });
  }

  private jobOptions(opts: AddJobOptions): JobsOptions {
    return {
      attempts: opts.attempts ?? DEFAULT_ATTEMPTS,
      backoff: { type: 'exponential', delay: opts.backoffMs ?? DEFAULT_BACKOFF_MS },
      delay: opts.delayMs && opts.delayMs > 0 ? Math.round(opts.delayMs) : undefined,
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    };
  }

  private queueFor(name: JobName): Queue {
    return this.queues.get(JOB_QUEUE[name])!;
  }

  private assertUsable(name: JobName): void {
    if (this.stopping) throw new Error('the queue is stopped');
    if (!(name in JOB_QUEUE)) throw new Error(`unknown job name "${name}"`);
    if (this.started && !this.handlers.has(name)) throw missingHandlersError([name]);
  }

  private async shutdown(): Promise<void> {
    const closing = Promise.all(this.workers.map((w) => w.close()));
    if (!(await settlesWithin(closing, this.drainTimeoutMs))) {
      this.logger.warn(`stopping: jobs still active after ${this.drainTimeoutMs} ms, aborting them (they are retried once their lock expires)`);
      for (const worker of this.workers) worker.cancelAllJobs('the queue is stopping');
      await settlesWithin(closing, ABORT_GRACE_MS);
    }
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}

/** True when the promise settled in time (its rejection is logged by the emitter, not rethrown here). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
