import { Logger } from '@nestjs/common';
import { describe, expect, it } from '@jest/globals';
import { waitFor } from '../../test/support/eventually.js';
import { InlineQueueDriver } from './inline-queue.driver.js';
import { runQueueDriverContract } from './queue-driver.contract.js';
import { JobName } from './queue-driver.js';

// Failures and retries are logged as warnings by design; keep test output to real errors.
Logger.overrideLogger(['error']);

runQueueDriverContract('inline', () => new InlineQueueDriver({ drainTimeoutMs: 2000 }));

describe('InlineQueueDriver', () => {
  it('never runs a handler inside add(), not even its synchronous part', async () => {
    const queue = new InlineQueueDriver();
    const order: string[] = [];
    queue.registerHandler(JobName.FILL_CACHE_ENTRY, async () => {
      order.push('handler');
    });
    await queue.start({ concurrency: 1 });
    const added = queue.add(JobName.FILL_CACHE_ENTRY, {});
    order.push('add returned');
    await added;
    order.push('add resolved');
    await waitFor('the handler to run', () => order.includes('handler'));
    expect(order).toEqual(['add returned', 'add resolved', 'handler']);
    await queue.stop();
  });

  it('aborts jobs still active after the drain timeout, and drops waiting ones', async () => {
    const queue = new InlineQueueDriver({ drainTimeoutMs: 50 });
    let abortedWith: unknown;
    let runs = 0;
    queue.registerHandler(JobName.FILL_CACHE_ENTRY, (job) => {
      runs++;
      return new Promise((_, reject) => {
        job.signal.addEventListener('abort', () => {
          abortedWith = job.signal.reason;
          reject(job.signal.reason);
        });
      });
    });
    await queue.start({ concurrency: 1 });
    await queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: 'stuck' });
    await queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: 'never-runs' });
    await queue.add(JobName.FILL_CACHE_ENTRY, {}, { jobId: 'delayed', delayMs: 10 });
    // one job stuck in its handler, and the other two waiting behind it (the delayed one past its delay)
    await waitFor('the first job to be stuck, the others waiting', async () => {
      const counts = await queue.counts();
      return runs === 1 && counts.active === 1 && counts.waiting === 2 && counts.delayed === 0;
    });

    const before = Date.now();
    await queue.stop();
    expect(Date.now() - before).toBeGreaterThanOrEqual(45);
    expect(String(abortedWith)).toMatch(/stopping/);
    // deliberate: time for a dropped job to run if stop() had left it queued (proving it does not)
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(runs).toBe(1);
    expect(await queue.counts()).toMatchObject({ waiting: 0, active: 0, delayed: 0 });
  });

  it('keeps a bounded failure history, newest first', async () => {
    const queue = new InlineQueueDriver({ failureHistory: 2 });
    queue.registerHandler(JobName.CLEAN_ORPHANS, async (job) => {
      throw new Error(`failed ${job.id}`);
    });
    await queue.start({ concurrency: 1 });
    for (const id of ['a-1', 'a-2', 'a-3']) await queue.add(JobName.CLEAN_ORPHANS, {}, { jobId: id, attempts: 1 });
    await waitFor('three failures', async () => (await queue.counts()).failed === 3);
    expect((await queue.failures(10)).map((f) => f.id)).toEqual(['a-3', 'a-2']);
    expect((await queue.counts()).failed).toBe(3);
    await queue.stop();
  });
});
