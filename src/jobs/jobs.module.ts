import { RedisConnections } from '../redis/redis-connections.js';
import { RedisModule } from '../redis/redis.module.js';
import { BeforeApplicationShutdown, Inject, Logger, Module, OnApplicationBootstrap } from '@nestjs/common';
import { appConfig, queueConfig, type AppConfig, type QueueConfig } from '../config/config.js';
import { BullmqQueueDriver } from './bullmq-queue.driver.js';
import { InlineQueueDriver } from './inline-queue.driver.js';
import { JobName, QUEUE_DRIVER, type QueueDriver } from './queue-driver.js';

/** Share of SHUTDOWN_TIMEOUT_MS given to draining active jobs, leaving the rest for closing the other pools. */
const DRAIN_SHARE = 0.8;

/**
 * Provides QUEUE_DRIVER (QUEUE_DRIVER=bullmq|inline) to the modules that import it.
 *
 * Modules register their handlers in a constructor or onModuleInit (and may enqueue or declare repeatable
 * jobs there too). Once every module is initialised, onApplicationBootstrap starts processing in processes
 * that run jobs (queue.runJobs: RUN_JOBS, by default the inline queue or APP_ROLE=worker). start() fails
 * the boot when a job name used so far has no handler; the worker process additionally requires a handler
 * for every JobName, since it consumes what the API replicas enqueue.
 *
 * Shutdown drains in beforeApplicationShutdown, i.e. before onApplicationShutdown hooks close the
 * database pool and other connections that running jobs still need.
 */
@Module({
  imports: [RedisModule],
  providers: [
    {
      provide: QUEUE_DRIVER,
      inject: [queueConfig.KEY, appConfig.KEY, RedisConnections],
      useFactory: (queue: QueueConfig, app: AppConfig, redis: RedisConnections): QueueDriver => {
        const drainTimeoutMs = Math.floor(app.shutdownTimeoutMs * DRAIN_SHARE);
        if (queue.driver === 'bullmq') {
          if (!queue.redisUrl) throw new Error('QUEUE_DRIVER=bullmq needs REDIS_URL');
          return new BullmqQueueDriver({ redis, prefix: queue.prefix, drainTimeoutMs });
        }
        return new InlineQueueDriver({ drainTimeoutMs });
      },
    },
  ],
  exports: [QUEUE_DRIVER],
})
export class JobsModule implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(JobsModule.name);

  constructor(
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    @Inject(queueConfig.KEY) private readonly queueSettings: QueueConfig,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    try {
      await this.queue.check();
    } catch (err) {
      await this.queue.stop();
      const where = this.queueSettings.redisUrl ? ` at ${redactUrl(this.queueSettings.redisUrl)}` : '';
      throw new Error(`cannot reach the job queue${where}: ${(err as Error).message}`, { cause: err });
    }
    if (!this.queueSettings.runJobs) {
      this.logger.log(`queue: ${this.queueSettings.driver}, jobs run in the worker processes`);
      return;
    }
    try {
      await this.queue.start({
        concurrency: this.queueSettings.concurrency,
        requireHandlers: this.app.role === 'worker' ? Object.values(JobName) : [],
      });
    } catch (err) {
      await this.queue.stop(); // boot fails: release the connections so the process can exit
      throw err;
    }
    this.logger.log(`queue: ${this.queueSettings.driver}, running jobs (concurrency ${this.queueSettings.concurrency} per queue)`);
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.queue.stop();
  }
}

/** A URL for messages: host and port only, never credentials. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return 'the configured URL';
  }
}
