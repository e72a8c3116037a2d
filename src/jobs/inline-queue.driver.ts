import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import {
  AddJobOptions,
  assertValidAddOptions,
  assertValidJobId,
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  EnqueuedJob,
  errorMessage,
  JOB_QUEUE,
  JobCounts,
  JobFailure,
  JobHandler,
  JobName,
  missingHandlersError,
  QueueDriver,
  QueueName,
  retryDelayMs,
  StartOptions,
} from './queue-driver.js';

export interface InlineQueueDriverOptions {
  /** How long stop() waits for active jobs before aborting them (default 10 s). */
  drainTimeoutMs?: number;
  /** Failures kept for failures() (default 1000, oldest dropped first). */
  failureHistory?: number;
}

type InlineJobState = 'waiting' | 'active' | 'delayed';

interface InlineJob {
  id: string;
  name: JobName;
  queue: QueueName;
  data: unknown;
  attempts: number;
  backoffMs: number;
  attemptsMade: number;
  state: InlineJobState;
  timer?: NodeJS.Timeout;
  abort?: AbortController;
}

interface Lane {
  waiting: InlineJob[];
  active: number;
}

interface RepeatDeclaration {
  name: JobName;
  data: unknown;
  everyMs: number;
  timer?: NodeJS.Timeout;
}

/**
 * The in-process queue: jobs live in this process's memory (lost on exit), run asynchronously, never
 * inside add(). Per queue: a concurrency limit and a FIFO of waiting jobs. Per job: delay and retry
 * timers (unref'd, so they never keep the process alive), exponential backoff, de-duplication by id
 * while the job is waiting, active or delayed. Data goes through JSON like it would through Redis.
 */
export class InlineQueueDriver implements QueueDriver {
  private readonly logger = new Logger(InlineQueueDriver.name);
  private readonly drainTimeoutMs: number;
  private readonly failureHistory: number;

  private readonly handlers = new Map<JobName, JobHandler>();
  private readonly used = new Set<JobName>();
  /** Jobs waiting, active or delayed, by queue and id (ids are unique per queue, as in BullMQ). */
  private readonly jobs = new Map<string, InlineJob>();
  private readonly lanes = new Map<QueueName, Lane>(Object.values(QueueName).map((q) => [q, { waiting: [], active: 0 }]));
  private readonly repeats = new Map<string, RepeatDeclaration>();
  private readonly recentFailures: JobFailure[] = [];
  private failedTotal = 0;
  private completedTotal = 0;

  private concurrency = 1;
  private started = false;
  private stopping: Promise<void> | undefined;
  private pumpScheduled = false;
  private readonly idleWaiters = new Set<() => void>();

  constructor(options: InlineQueueDriverOptions = {}) {
    this.drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
    this.failureHistory = options.failureHistory ?? 1000;
  }

  registerHandler<T>(name: JobName, handler: JobHandler<T>): void {
    if (this.handlers.has(name)) throw new Error(`a handler for job "${name}" is already registered`);
    this.handlers.set(name, handler as JobHandler);
  }

  async add<T>(name: JobName, data: T, opts: AddJobOptions = {}): Promise<EnqueuedJob> {
    this.assertUsable(name);
    assertValidAddOptions(opts);
    this.used.add(name);
    const id = opts.jobId ?? randomUUID();
    if (this.jobs.has(jobKey(JOB_QUEUE[name], id))) return { id, deduplicated: true };

    const job: InlineJob = {
      id,
      name,
      queue: JOB_QUEUE[name],
      data: JSON.parse(JSON.stringify(data ?? null)),
      attempts: opts.attempts ?? DEFAULT_ATTEMPTS,
      backoffMs: opts.backoffMs ?? DEFAULT_BACKOFF_MS,
      attemptsMade: 0,
      state: 'waiting',
    };
    this.jobs.set(jobKey(job.queue, id), job);
    if (opts.delayMs && opts.delayMs > 0) this.delay(job, opts.delayMs);
    else this.enqueue(job);
    return { id, deduplicated: false };
  }

  async repeat<T>(name: JobName, data: T, everyMs: number, jobId: string): Promise<void> {
    this.assertUsable(name);
    assertValidJobId(jobId);
    if (!Number.isFinite(everyMs) || everyMs <= 0) throw new Error(`everyMs must be > 0, got ${everyMs}`);
    this.used.add(name);
    const previous = this.repeats.get(jobId);
    if (previous?.timer) clearInterval(previous.timer);
    const declaration: RepeatDeclaration = { name, data: JSON.parse(JSON.stringify(data ?? null)), everyMs };
    this.repeats.set(jobId, declaration);
    if (this.started) this.scheduleRepeat(jobId, declaration);
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

    this.concurrency = options.concurrency;
    this.started = true;
    for (const [jobId, declaration] of this.repeats) this.scheduleRepeat(jobId, declaration);
    this.schedulePump();
  }

  stop(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  async counts(): Promise<JobCounts> {
    let waiting = 0;
    let delayed = 0;
    for (const job of this.jobs.values()) {
      if (job.state === 'waiting') waiting++;
      else if (job.state === 'delayed') delayed++;
    }
    return { waiting, active: this.activeCount(), delayed, failed: this.failedTotal, completed: this.completedTotal };
  }

  async failures(limit: number): Promise<JobFailure[]> {
    return this.recentFailures.slice(0, Math.max(0, limit)).map((f) => ({ ...f }));
  }

  async check(): Promise<void> {
    if (this.stopping) throw new Error('the in-process queue is stopped');
  }

  private assertUsable(name: JobName): void {
    if (this.stopping) throw new Error('the queue is stopped');
    if (!(name in JOB_QUEUE)) throw new Error(`unknown job name "${name}"`);
    if (this.started && !this.handlers.has(name)) throw missingHandlersError([name]);
  }

  private enqueue(job: InlineJob): void {
    job.state = 'waiting';
    job.timer = undefined;
    this.lanes.get(job.queue)!.waiting.push(job);
    this.schedulePump();
  }

  private delay(job: InlineJob, ms: number): void {
    job.state = 'delayed';
    job.timer = setTimeout(() => this.enqueue(job), ms);
    job.timer.unref();
  }

  /** Jobs always start on a later turn of the event loop, never inside the caller's add(). */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (!this.started || this.stopping) return;
    for (const lane of this.lanes.values()) {
      while (lane.active < this.concurrency && lane.waiting.length) {
        void this.run(lane, lane.waiting.shift()!);
      }
    }
  }

  private async run(lane: Lane, job: InlineJob): Promise<void> {
    lane.active++;
    job.state = 'active';
    job.abort = new AbortController();
    const attempt = job.attemptsMade + 1;
    try {
      const handler = this.handlers.get(job.name);
      if (!handler) throw new Error(`no handler registered for job "${job.name}"`);
      await handler({ id: job.id, name: job.name, data: job.data, attempt, signal: job.abort.signal });
      this.completedTotal++;
      this.jobs.delete(jobKey(job.queue, job.id));
    } catch (err) {
      this.onFailure(job, err);
    } finally {
      job.abort = undefined;
      lane.active--;
      if (this.activeCount() === 0) for (const wake of this.idleWaiters) wake();
      this.schedulePump();
    }
  }

  private onFailure(job: InlineJob, err: unknown): void {
    job.attemptsMade++;
    const message = errorMessage(err);
    if (job.attemptsMade < job.attempts && !this.stopping) {
      const wait = retryDelayMs(job.backoffMs, job.attemptsMade);
      this.logger.debug(`job ${job.name} ${job.id} failed (attempt ${job.attemptsMade}/${job.attempts}), retrying in ${wait} ms: ${message}`);
      this.delay(job, wait);
      return;
    }
    this.jobs.delete(jobKey(job.queue, job.id));
    this.failedTotal++;
    this.recentFailures.unshift({
      id: job.id,
      name: job.name,
      data: job.data,
      attempts: job.attemptsMade,
      error: message,
      failedAt: new Date(),
    });
    if (this.recentFailures.length > this.failureHistory) this.recentFailures.length = this.failureHistory;
    this.logger.warn(`job ${job.name} ${job.id} failed after ${job.attemptsMade} attempt(s): ${message}`);
  }

  private scheduleRepeat(jobId: string, declaration: RepeatDeclaration): void {
    declaration.timer = setInterval(() => {
      // The repeat's own id as job id: a run that is still going makes the next tick a no-op.
      this.add(declaration.name, declaration.data, { jobId }).catch((err: unknown) =>
        this.logger.error(`could not enqueue repeated job ${declaration.name} ${jobId}: ${errorMessage(err)}`),
      );
    }, declaration.everyMs);
    declaration.timer.unref();
  }

  private activeCount(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.active;
    return n;
  }

  private async drain(): Promise<void> {
    for (const declaration of this.repeats.values()) if (declaration.timer) clearInterval(declaration.timer);
    let dropped = 0;
    for (const job of this.jobs.values()) {
      if (job.state === 'active') continue;
      if (job.timer) clearTimeout(job.timer);
      this.jobs.delete(jobKey(job.queue, job.id));
      dropped++;
    }
    for (const lane of this.lanes.values()) lane.waiting.length = 0;
    if (dropped) this.logger.warn(`stopping: ${dropped} waiting or delayed job(s) dropped (the in-process queue does not persist)`);

    if (this.activeCount() === 0) return;
    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    const idle = new Promise<boolean>((resolve) => {
      wake = () => resolve(true);
      this.idleWaiters.add(wake);
    });
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.drainTimeoutMs);
    });
    const finished = await Promise.race([idle, timedOut]);
    clearTimeout(timer);
    this.idleWaiters.delete(wake!);
    if (!finished) {
      const active = [...this.jobs.values()].filter((j) => j.state === 'active');
      this.logger.warn(`stopping: ${active.length} job(s) still active after ${this.drainTimeoutMs} ms, aborting them`);
      for (const job of active) job.abort?.abort(new Error('the queue is stopping'));
    }
  }
}

function jobKey(queue: QueueName, id: string): string {
  return `${queue} ${id}`;
}
