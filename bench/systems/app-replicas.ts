/**
 * The app as a production deployment with two API replicas and one worker process, all on one deployment
 * (app-process.ts): the same Postgres scratch database, BullMQ queue prefix on REDIS_URL, storage (one
 * DATA_DIR, or one s3rver) and generated ENCRYPTION_KEY / JWT_PRIVATE_KEY. The replicas leave the
 * background jobs to the worker (RUN_JOBS=false). Needs DATABASE_URL and REDIS_URL: replicas of the
 * embedded database or the in-process queue would not share anything.
 */
import type { StartedProcesses } from '../started-processes.js';
import { AppDeployment } from './app-process.js';
import { AppSystem } from './app.system.js';

export interface AppReplicasOptions {
  storage: 'filesystem' | 's3';
  workDir: string;
  processes: StartedProcesses;
  upstreamUrl: string;
}

export class AppReplicas {
  private constructor(
    private readonly deployment: AppDeployment,
    /** Replica 1 (creates the virtual registries), and the same registries through replica 2. */
    readonly systems: readonly [AppSystem, AppSystem],
  ) {}

  /** Why the replicas cannot run here, or undefined when DATABASE_URL and REDIS_URL are set. */
  static unavailable(): string | undefined {
    return process.env.DATABASE_URL && process.env.REDIS_URL ? undefined : 'needs DATABASE_URL and REDIS_URL';
  }

  static async start(options: AppReplicasOptions): Promise<AppReplicas> {
    const deployment = await AppDeployment.create({ ...options, name: 'replicas', sharedKeys: true });
    try {
      // They boot together, as in production: migrations and the admin bootstrap take a Postgres lock.
      const [first, second] = await Promise.all([
        deployment.startApi('app replica 1', { runJobs: false }),
        deployment.startApi('app replica 2', { runJobs: false }),
        deployment.startWorker('app worker'),
      ]);
      const primary = new AppSystem(first, options.upstreamUrl);
      return new AppReplicas(deployment, [primary, primary.throughReplica(second)]);
    } catch (err) {
      await deployment.stop();
      throw err;
    }
  }

  /** One line: 2 API replicas + 1 worker, and the database, queue, storage and keys they share. */
  get configuration(): string {
    return `2 API replicas (RUN_JOBS=false) + 1 worker sharing ${this.deployment.parts.join(', ')}`;
  }

  /** Stops both replicas and the worker, then drops the database and deletes the Redis keys. */
  async stop(): Promise<void> {
    await this.deployment.stop();
  }
}
