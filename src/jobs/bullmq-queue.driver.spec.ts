import { RedisConnections } from '../redis/redis-connections.js';
import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { waitFor } from '../../test/support/eventually.js';
import { BullmqQueueDriver } from './bullmq-queue.driver.js';
import { runQueueDriverContract } from './queue-driver.contract.js';
import { JobName } from './queue-driver.js';

// Failures and retries are logged as warnings by design; keep test output to real errors.
Logger.overrideLogger(['error']);

const redisUrl = process.env.REDIS_URL;
// Needs a real Redis: without REDIS_URL the suite is reported as skipped, under a name that says why.
const describeWithRedis = redisUrl ? describe : describe.skip;
const suiteName = redisUrl ? `BullmqQueueDriver on ${redisUrl}` : 'BullmqQueueDriver (skipped: REDIS_URL is unset, no Redis to run against)';

describeWithRedis(suiteName, () => {
  // Every driver gets its own key prefix, so tests never see each other's jobs; all are deleted afterwards.
  const runPrefix = `cvr-test-${randomUUID()}`;
  let n = 0;
  const newPrefix = () => `${runPrefix}-${++n}`;
  const connections: RedisConnections[] = [];
  /** Each driver stands for a process of its own, with its own RedisModule connections. */
  const redisFor = (url: string) => {
    const redis = new RedisConnections(url);
    connections.push(redis);
    return redis;
  };
  const driverFor = (prefix: string) => new BullmqQueueDriver({ redis: redisFor(redisUrl!), prefix, drainTimeoutMs: 2000 });

  afterAll(async () => {
    await Promise.all(connections.map((c) => c.close()));
    const redis = new Redis(redisUrl!);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${runPrefix}-*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    await redis.quit();
  });

  runQueueDriverContract('bullmq', () => driverFor(newPrefix()));

  it('runs in a worker process the jobs an API process enqueued, once per job id', async () => {
    const prefix = newPrefix();
    const api = driverFor(prefix);
    const worker = driverFor(prefix);
    const seen: string[] = [];
    try {
      worker.registerHandler(JobName.FILL_CACHE_ENTRY, async (job) => {
        seen.push(job.id);
      });
      const first = await api.add(JobName.FILL_CACHE_ENTRY, { digest: 'sha256-cc' }, { jobId: 'fill-sha256-cc' });
      const second = await worker.add(JobName.FILL_CACHE_ENTRY, { digest: 'sha256-cc' }, { jobId: 'fill-sha256-cc' });
      expect([first.deduplicated, second.deduplicated]).toEqual([false, true]);
      await worker.start({ concurrency: 2, requireHandlers: [JobName.FILL_CACHE_ENTRY] });
      await waitFor('the job to complete', async () => (await api.counts()).completed === 1);
      // nothing else is queued (the second add was a duplicate), so no second run can still come
      expect(await api.counts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 1 });
      expect(seen).toEqual(['fill-sha256-cc']);
    } finally {
      await Promise.all([api.stop(), worker.stop()]);
    }
  });

  it('fails the readiness check when Redis does not answer', async () => {
    const queue = new BullmqQueueDriver({ redis: redisFor('redis://127.0.0.1:1'), prefix: newPrefix(), drainTimeoutMs: 100 });
    try {
      await expect(queue.check()).rejects.toThrow();
    } finally {
      await queue.stop();
    }
  });
});
