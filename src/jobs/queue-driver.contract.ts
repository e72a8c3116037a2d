import { afterEach, describe, expect, it } from '@jest/globals';
import { waitFor } from '../../test/support/eventually.js';
import { JobName, QueueDriver, QueuedJob } from './queue-driver.js';

/**
 * The behaviour every QueueDriver must have, run against each driver (inline always, bullmq on Redis).
 * `factory` returns a fresh, unstarted driver that shares no jobs with any other driver it returned.
 * Assertions are about order and counts, never about how long something took (the machine may be busy);
 * background work is awaited by polling what it changes (`waitFor`), never by sleeping a fixed time.
 */

/** A handler's simulated work: it keeps the job active for a while (never used to wait for a job). */
const work = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A promise that the test resolves when it wants a handler to finish. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

export function runQueueDriverContract(driverName: string, factory: () => QueueDriver | Promise<QueueDriver>): void {
  describe(`QueueDriver contract: ${driverName}`, () => {
    const drivers: QueueDriver[] = [];
    const newDriver = async (): Promise<QueueDriver> => {
      const driver = await factory();
      drivers.push(driver);
      return driver;
    };

    afterEach(async () => {
      await Promise.all(drivers.splice(0).map((d) => d.stop()));
    });

    describe('de-duplication by job id', () => {
      it('adds a waiting job id once, runs it once, and accepts the id again once it finished', async () => {
        const queue = await newDriver();
        const runs: Array<{ id: string; data: unknown }> = [];
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async (job) => {
          runs.push({ id: job.id, data: job.data });
        });

        expect(await queue.add(JobName.FILL_CACHE_ENTRY, { n: 1 }, { jobId: 'fill-sha256-aa' })).toEqual({ id: 'fill-sha256-aa', deduplicated: false });
        expect(await queue.add(JobName.FILL_CACHE_ENTRY, { n: 2 }, { jobId: 'fill-sha256-aa' })).toEqual({ id: 'fill-sha256-aa', deduplicated: true });
        expect((await queue.counts()).waiting).toBe(1);

        await queue.start({ concurrency: 2 });
        await waitFor('the job to run', () => runs.length === 1);
        await waitFor('the job to be counted as completed', async () => (await queue.counts()).completed === 1);
        expect((await queue.counts()).waiting).toBe(0);
        expect(runs).toEqual([{ id: 'fill-sha256-aa', data: { n: 1 } }]);

        expect(await queue.add(JobName.FILL_CACHE_ENTRY, { n: 3 }, { jobId: 'fill-sha256-aa' })).toEqual({ id: 'fill-sha256-aa', deduplicated: false });
        await waitFor('the job to run again', () => runs.length === 2);
        expect(runs[1]).toEqual({ id: 'fill-sha256-aa', data: { n: 3 } });
      });

      it('does not add a job id again while it is active or delayed', async () => {
        const queue = await newDriver();
        const release = gate();
        let runs = 0;
        queue.registerHandler(JobName.MARK_FOR_DESTRUCTION, async () => {
          runs++;
          await release.opened;
        });
        await queue.start({ concurrency: 2 });

        await queue.add(JobName.MARK_FOR_DESTRUCTION, {}, { jobId: 'purge-active' });
        await waitFor('the job to be active', () => runs === 1);
        expect(await queue.add(JobName.MARK_FOR_DESTRUCTION, {}, { jobId: 'purge-active' })).toEqual({ id: 'purge-active', deduplicated: true });

        expect((await queue.add(JobName.MARK_FOR_DESTRUCTION, {}, { jobId: 'purge-later', delayMs: 5000 })).deduplicated).toBe(false);
        expect((await queue.add(JobName.MARK_FOR_DESTRUCTION, {}, { jobId: 'purge-later', delayMs: 10 })).deduplicated).toBe(true);
        expect((await queue.counts()).delayed).toBe(1);

        release.open();
        await waitFor('the active job to be counted as completed', async () => (await queue.counts()).completed === 1);
        expect((await queue.counts()).waiting).toBe(0);
        expect(runs).toBe(1);
      });

      it('gives jobs without a job id distinct ids', async () => {
        const queue = await newDriver();
        const a = await queue.add(JobName.CLEAN_ORPHANS, {});
        const b = await queue.add(JobName.CLEAN_ORPHANS, {});
        expect(a.deduplicated).toBe(false);
        expect(b.deduplicated).toBe(false);
        expect(a.id).not.toBe(b.id);
      });

      it('rejects job ids BullMQ cannot store (":" or a plain integer)', async () => {
        const queue = await newDriver();
        await expect(queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: 'sha256:abc' })).rejects.toThrow(/must not contain ':'/);
        await expect(queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: '42' })).rejects.toThrow(/plain integer/);
        await expect(queue.repeat(JobName.RUN_CLEANUP_POLICIES, {}, 1000, 'policy:1')).rejects.toThrow(/must not contain ':'/);
        expect((await queue.counts()).waiting).toBe(0);
      });
    });

    describe('retries', () => {
      it('retries with exponential backoff, then records the failure with its attempts and message', async () => {
        const queue = await newDriver();
        const starts: Array<{ attempt: number; at: number }> = [];
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async (job) => {
          starts.push({ attempt: job.attempt, at: Date.now() });
          throw new Error(`upstream answered 503 (attempt ${job.attempt})`);
        });
        await queue.start({ concurrency: 1 });

        await queue.add(JobName.FILL_CACHE_ENTRY, { digest: 'sha256-bb' }, { jobId: 'fill-sha256-bb', attempts: 3, backoffMs: 40 });
        await waitFor('the failure to be recorded', async () => (await queue.failures(10)).length === 1);

        expect(starts.map((s) => s.attempt)).toEqual([1, 2, 3]);
        // order, not timing: each attempt starts after the previous one failed
        expect(starts.map((s) => s.at)).toEqual([...starts.map((s) => s.at)].sort((a, b) => a - b));

        const [failure] = await queue.failures(10);
        expect(failure).toMatchObject({
          id: 'fill-sha256-bb',
          name: JobName.FILL_CACHE_ENTRY,
          data: { digest: 'sha256-bb' },
          attempts: 3,
          error: 'upstream answered 503 (attempt 3)',
        });
        expect(failure.failedAt).toBeInstanceOf(Date);
        expect(await queue.counts()).toMatchObject({ failed: 1, waiting: 0, active: 0, delayed: 0 });
        // a failed job id can be enqueued again
        expect((await queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: 'fill-sha256-bb', attempts: 1 })).deduplicated).toBe(false);
      });

      it('completes a job that succeeds on a retry and records no failure', async () => {
        const queue = await newDriver();
        const attempts: number[] = [];
        queue.registerHandler(JobName.MARK_FOR_DESTRUCTION, async (job) => {
          attempts.push(job.attempt);
          if (job.attempt === 1) throw new Error('connection reset');
        });
        await queue.start({ concurrency: 1 });
        await queue.add(JobName.MARK_FOR_DESTRUCTION, {}, { jobId: 'purge-retry', attempts: 2, backoffMs: 10 });
        await waitFor('the job to complete', async () => (await queue.counts()).completed === 1);
        expect(attempts).toEqual([1, 2]);
        expect(await queue.failures(10)).toEqual([]);
      });

      it('lists the most recent failures first, up to the limit', async () => {
        const queue = await newDriver();
        queue.registerHandler(JobName.CLEAN_ORPHANS, async (job: QueuedJob<{ n: number }>) => {
          throw new Error(`boom ${job.data.n}`);
        });
        await queue.start({ concurrency: 1 });
        for (const n of [1, 2, 3]) {
          await queue.add(JobName.CLEAN_ORPHANS, { n }, { jobId: `orphans-${n}`, attempts: 1 });
          await waitFor(`failure ${n}`, async () => (await queue.counts()).failed === n);
          // "most recent" is by failedAt (milliseconds): the next job fails once the clock has passed this failure
          const [latest] = await queue.failures(1);
          await waitFor(`the clock to pass failure ${n}`, () => Date.now() > latest.failedAt.getTime());
        }
        expect((await queue.failures(2)).map((f) => f.error)).toEqual(['boom 3', 'boom 2']);
        const all = await queue.failures(10);
        expect(all.map((f) => [f.id, f.error])).toEqual([
          ['orphans-3', 'boom 3'],
          ['orphans-2', 'boom 2'],
          ['orphans-1', 'boom 1'],
        ]);
        expect(await queue.counts()).toMatchObject({ failed: 3, completed: 0, waiting: 0, active: 0, delayed: 0 });
      });
    });

    describe('scheduling', () => {
      it('never runs more jobs of one queue at once than the concurrency', async () => {
        const queue = await newDriver();
        let active = 0;
        let maxActive = 0;
        let done = 0;
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => {
          active++;
          maxActive = Math.max(maxActive, active);
          await work(40); // deliberate: jobs stay active long enough to overlap, so a fourth at once would show
          active--;
          done++;
        });
        await queue.start({ concurrency: 3 });
        for (let i = 0; i < 9; i++) await queue.add(JobName.FILL_CACHE_ENTRY, { i }, { jobId: `fill-${i}-x` });
        await waitFor('all jobs to finish', () => done === 9);
        expect(maxActive).toBe(3);
        expect((await queue.counts()).completed).toBe(9);
      });

      it('does not run a delayed job before its delay', async () => {
        const queue = await newDriver();
        let ranAt: number | undefined;
        queue.registerHandler(JobName.DESTROY_PENDING, async () => {
          ranAt = Date.now();
        });
        await queue.start({ concurrency: 1 });
        await queue.add(JobName.DESTROY_PENDING, {}, { jobId: 'destroy-later', delayMs: 150 });
        // order, not timing: first counted as delayed and not run, then run once and counted as completed
        expect((await queue.counts()).delayed).toBe(1);
        expect(ranAt).toBeUndefined();
        await waitFor('the delayed job to run', () => ranAt !== undefined);
        await waitFor('the delayed job to be counted as completed', async () => (await queue.counts()).completed === 1);
        expect((await queue.counts()).delayed).toBe(0);
      });

      it('runs a repeatable job every interval, with its data', async () => {
        const queue = await newDriver();
        const seen: unknown[] = [];
        queue.registerHandler(JobName.RUN_CLEANUP_POLICIES, async (job) => {
          seen.push(job.data);
        });
        await queue.repeat(JobName.RUN_CLEANUP_POLICIES, { scope: 'all' }, 60, 'cleanup-policies');
        await queue.repeat(JobName.RUN_CLEANUP_POLICIES, { scope: 'all' }, 60, 'cleanup-policies');
        await queue.start({ concurrency: 1 });
        await waitFor('two runs', () => seen.length >= 2);
        expect(seen.slice(0, 2)).toEqual([{ scope: 'all' }, { scope: 'all' }]);
      });

      it('passes data through JSON, like a queue on Redis would', async () => {
        const queue = await newDriver();
        let received: unknown;
        queue.registerHandler(JobName.MARK_FOR_DESTRUCTION, async (job) => {
          received = job.data;
        });
        await queue.start({ concurrency: 1 });
        await queue.add(JobName.MARK_FOR_DESTRUCTION, { at: new Date(0), ids: [1, 2], skip: undefined });
        await waitFor('the job to run', () => received !== undefined);
        expect(received).toEqual({ at: '1970-01-01T00:00:00.000Z', ids: [1, 2] });
      });
    });

    describe('startup', () => {
      it('fails to start when a job name used before start has no handler', async () => {
        const queue = await newDriver();
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => undefined);
        await queue.add(JobName.FILL_CACHE_ENTRY, {});
        await queue.add(JobName.MARK_FOR_DESTRUCTION, {});
        await expect(queue.start({ concurrency: 1 })).rejects.toThrow(/no handler registered for job "mark-for-destruction"/);
      });

      it('fails to start when a repeatable job has no handler', async () => {
        const queue = await newDriver();
        await queue.repeat(JobName.RUN_CLEANUP_POLICIES, {}, 60_000, 'cleanup-policies');
        await expect(queue.start({ concurrency: 1 })).rejects.toThrow(/no handler registered for job "run-cleanup-policies"/);
      });

      it('fails to start when a required job name has no handler, and names every missing one', async () => {
        const queue = await newDriver();
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => undefined);
        await expect(
          queue.start({ concurrency: 1, requireHandlers: [JobName.FILL_CACHE_ENTRY, JobName.CLEAN_ORPHANS, JobName.DESTROY_PENDING] }),
        ).rejects.toThrow(/"clean-orphans", "destroy-pending"/);
      });

      it('once started, refuses to enqueue a job name that has no handler', async () => {
        const queue = await newDriver();
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => undefined);
        await queue.start({ concurrency: 1 });
        await expect(queue.add(JobName.CLEAN_ORPHANS, {})).rejects.toThrow(/no handler registered for job "clean-orphans"/);
        expect(() => queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => undefined)).toThrow(/already registered/);
      });

      it('answers the readiness check and reports counts', async () => {
        const queue = await newDriver();
        await expect(queue.check()).resolves.toBeUndefined();
        expect(await queue.counts()).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 });
      });
    });

    describe('stop', () => {
      it('waits for active jobs to finish, then refuses new ones', async () => {
        const queue = await newDriver();
        let started = false;
        let finished = false;
        queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => {
          started = true;
          await work(150); // deliberate: the job is still busy when stop() is called
          finished = true;
        });
        await queue.start({ concurrency: 1 });
        await queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: 'fill-slow' });
        await waitFor('the job to start', () => started);

        expect(finished).toBe(false);
        await queue.stop();
        // order, not timing: the active job had finished by the time stop() resolved
        expect(finished).toBe(true);
        await expect(queue.add(JobName.FILL_CACHE_ENTRY, {})).rejects.toThrow(/stopped/);
        await expect(queue.stop()).resolves.toBeUndefined();
      });
    });
  });
}
