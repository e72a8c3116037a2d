import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Inject, Injectable, Module, OnModuleInit, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { waitFor } from '../../test/support/eventually.js';
import { ConfigModule } from '../config/config.module.js';
import { RedisConnections } from '../redis/redis-connections.js';
import { ConfigValidationError, parseEnvironment } from '../config/environment.js';
import { JobsModule } from './jobs.module.js';
import { JobName, QUEUE_DRIVER, type QueueDriver } from './queue-driver.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What the feature module of a test app does in onModuleInit, the way real modules declare their jobs. */
interface FeatureSetup {
  handle?: JobName[];
  enqueue?: Array<{ name: JobName; jobId: string }>;
  onRun?: (name: JobName, id: string) => Promise<void> | void;
}

/** Boots the JobsModule with a config environment and one feature module (no HTTP). */
async function bootApp(env: Record<string, string>, setup: FeatureSetup): Promise<INestApplicationContext> {
  const config = ConfigModule.forRoot(parseEnvironment({ SHUTDOWN_TIMEOUT_MS: '2000', ...env }));

  @Injectable()
  class FeatureJobs implements OnModuleInit {
    constructor(@Inject(QUEUE_DRIVER) private readonly queue: QueueDriver) {}

    async onModuleInit(): Promise<void> {
      for (const name of setup.handle ?? []) {
        this.queue.registerHandler(name, async (job) => setup.onRun?.(job.name, job.id));
      }
      for (const { name, jobId } of setup.enqueue ?? []) await this.queue.add(name, {}, { jobId });
    }
  }

  @Module({ imports: [JobsModule], providers: [FeatureJobs] })
  class FeatureModule {}

  @Module({
    imports: [config, JobsModule, FeatureModule],
  })
  class TestAppModule {}

  return NestFactory.createApplicationContext(TestAppModule, { logger: false, abortOnError: false });
}

describe('JobsModule', () => {
  const apps: INestApplicationContext[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  it('starts the in-process queue once every module registered its handlers, and drains it on close', async () => {
    const runs: string[] = [];
    let finished = false;
    const app = await bootApp(
      {},
      {
        handle: [JobName.FILL_CACHE_ENTRY],
        enqueue: [{ name: JobName.FILL_CACHE_ENTRY, jobId: 'fill-at-boot' }],
        onRun: async (_name, id) => {
          runs.push(id);
          await sleep(100); // deliberate: the job is still busy when app.close() is called
          finished = true;
        },
      },
    );
    await waitFor('the job enqueued at boot to run', () => runs.length === 1);
    await app.close();
    expect(runs).toEqual(['fill-at-boot']);
    expect(finished).toBe(true);
  });

  it('fails the boot when a module enqueues a job that no module handles', async () => {
    await expect(bootApp({}, { handle: [JobName.FILL_CACHE_ENTRY], enqueue: [{ name: JobName.CLEAN_ORPHANS, jobId: 'orphans-at-boot' }] })).rejects.toThrow(
      /no handler registered for job "clean-orphans"/,
    );
  });

  describe('which processes run jobs (RUN_JOBS)', () => {
    const runJobs = (env: Record<string, string>) => parseEnvironment(env).queue.runJobs;

    it('runs jobs in the API process with the in-process queue, and only in workers with Redis, by default', () => {
      expect(runJobs({})).toBe(true);
      expect(runJobs({ REDIS_URL: 'redis://127.0.0.1:6379' })).toBe(false);
      expect(runJobs({ REDIS_URL: 'redis://127.0.0.1:6379', APP_ROLE: 'worker' })).toBe(true);
      expect(runJobs({ REDIS_URL: 'redis://127.0.0.1:6379', QUEUE_DRIVER: 'inline' })).toBe(true);
    });

    it('lets a single API process with Redis run jobs itself (RUN_JOBS=true)', () => {
      expect(runJobs({ REDIS_URL: 'redis://127.0.0.1:6379', RUN_JOBS: 'true' })).toBe(true);
    });

    it('refuses RUN_JOBS=false where nothing else would run the jobs', () => {
      expect(() => parseEnvironment({ RUN_JOBS: 'false' })).toThrow(ConfigValidationError);
      expect(() => parseEnvironment({ RUN_JOBS: 'false', REDIS_URL: 'redis://127.0.0.1:6379', APP_ROLE: 'worker' })).toThrow(/RUN_JOBS/);
      expect(() => parseEnvironment({ RUN_JOBS: 'sometimes' })).toThrow(/RUN_JOBS must be one of auto, true, false/);
      expect(() => parseEnvironment({ QUEUE_PREFIX: 'a:b' })).toThrow(/QUEUE_PREFIX/);
    });
  });

  const redisUrl = process.env.REDIS_URL;
  // Needs a real Redis: without REDIS_URL this block is reported as skipped, under a name that says why.
  const describeWithRedis = redisUrl ? describe : describe.skip;
  describeWithRedis(redisUrl ? 'with BullMQ on Redis' : 'with BullMQ (skipped: REDIS_URL is unset)', () => {
    const prefix = `cvr-test-module-${randomUUID()}`;
    const redisEnv = { REDIS_URL: redisUrl!, QUEUE_PREFIX: prefix };
    // A boot that fails (the worker missing handlers below) never reaches the shutdown hooks, so the
    // RedisModule connection its queue check opened stays open and would keep Jest running: every
    // RedisConnections that opens a connection here is remembered and closed at the end.
    const opened = new Set<RedisConnections>();

    beforeAll(() => {
      for (const method of ['commands', 'subscriber'] as const) {
        const open = RedisConnections.prototype[method];
        jest.spyOn(RedisConnections.prototype, method).mockImplementation(function (this: RedisConnections) {
          opened.add(this);
          return open.call(this);
        });
      }
    });

    afterAll(async () => {
      jest.restoreAllMocks();
      await Promise.all([...opened].map((connections) => connections.close()));
      const redis = new Redis(redisUrl!);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    });

    it('enqueues in the API process, fails a worker that misses handlers, and runs the job in a complete worker', async () => {
      const runs: string[] = [];
      const onRun = (_name: JobName, id: string) => void runs.push(id);
      const api = await bootApp(redisEnv, {
        handle: [JobName.FILL_CACHE_ENTRY],
        enqueue: [{ name: JobName.FILL_CACHE_ENTRY, jobId: 'fill-from-api' }],
        onRun,
      });
      apps.push(api);
      await sleep(100); // deliberate: time for a worker in the API process, if it wrongly had one, to take the job
      expect(runs).toEqual([]);
      expect((await api.get<QueueDriver>(QUEUE_DRIVER).counts()).waiting).toBe(1);

      await expect(bootApp({ ...redisEnv, APP_ROLE: 'worker' }, { handle: [JobName.FILL_CACHE_ENTRY], onRun })).rejects.toThrow(
        /no handler registered for job "mark-for-destruction", "destroy-pending", "clean-orphans", "run-cleanup-policies"/,
      );
      expect(runs).toEqual([]);

      apps.push(await bootApp({ ...redisEnv, APP_ROLE: 'worker' }, { handle: Object.values(JobName), onRun }));
      await waitFor('the worker to run the job', () => runs.length === 1);
      expect(runs).toEqual(['fill-from-api']);
    });
  });
});
