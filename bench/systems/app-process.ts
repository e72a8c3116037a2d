/**
 * The app as an operator runs it: `node dist/src/main.js` in a child process, in its production
 * configuration when the services are there: Postgres (a scratch database on DATABASE_URL's server),
 * BullMQ on REDIS_URL with RUN_JOBS=true (this one process serves pulls and runs the background jobs), and
 * filesystem storage, or S3 (an s3rver in a child process) with `--s3`. Without DATABASE_URL / REDIS_URL
 * it falls back to the embedded defaults and says so.
 */
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startS3Server, type S3TestServer } from '../../test/support/s3-server.js';
import { createScratchDatabase, TEST_ADMIN_TOKEN } from '../../test/support/test-app.js';
import { findFreePort } from '../../test/support/upstream-registry.js';
import type { StartedProcess, StartedProcesses } from '../started-processes.js';
import { waitForHttp } from './wait-for-http.js';

/** dist/bench/systems/app-process.js -> dist/src/main.js */
const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface AppProcessOptions {
  storage: 'filesystem' | 's3';
  workDir: string;
  processes: StartedProcesses;
  /** Write a V8 CPU profile (`--cpu-prof`) of the app into this directory when it exits. */
  cpuProfileDir?: string;
}

export interface AppMemory {
  /** VmRSS, bytes. */
  rss: number;
  /** VmHWM (peak RSS since start or the last resetPeak()), bytes. */
  peak: number;
}

export class AppProcess {
  private constructor(
    readonly url: string,
    readonly adminToken: string,
    /** Postgres URL of the app's scratch database; undefined with the embedded database. */
    readonly databaseUrl: string | undefined,
    /** One line: database, queue and storage in use. */
    readonly configuration: string,
    readonly logPath: string,
    private readonly started: StartedProcess,
    private readonly teardown: () => Promise<void>,
  ) {}

  get pid(): number {
    return this.started.pid;
  }

  static async start(options: AppProcessOptions): Promise<AppProcess> {
    const dir = join(options.workDir, 'app');
    const dataDir = join(dir, 'data');
    await mkdir(dataDir, { recursive: true });
    const cleanups: (() => Promise<void>)[] = [];
    let tornDown: Promise<void> | undefined;
    const teardown = () =>
      (tornDown ??= (async () => {
        for (const cleanup of [...cleanups].reverse()) await cleanup().catch(() => undefined);
      })());
    try {
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? dir,
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        LOG_LEVEL: process.env.BENCH_APP_LOG_LEVEL ?? 'warn',
        INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        UPSTREAM_ALLOW_PRIVATE: 'true',
        // Pull tokens outlive the whole run (the app's maximum is a day).
        JWT_TTL_SECONDS: '86400',
      };
      const parts: string[] = [];

      if (process.env.DATABASE_URL) {
        const scratch = await createScratchDatabase();
        cleanups.push(() => scratch.drop());
        env.DATABASE_URL = scratch.url;
        parts.push('Postgres (scratch database)');
      } else {
        parts.push('embedded PGlite (set DATABASE_URL for Postgres)');
      }

      if (process.env.REDIS_URL) {
        const prefix = `cvr-bench-${process.pid}-${Date.now()}`;
        env.REDIS_URL = process.env.REDIS_URL;
        env.RUN_JOBS = 'true';
        env.QUEUE_PREFIX = prefix;
        cleanups.push(() => deleteRedisKeys(process.env.REDIS_URL!, prefix));
        parts.push('BullMQ on Redis, RUN_JOBS=true');
      } else {
        parts.push('in-process queue (set REDIS_URL for BullMQ)');
      }

      if (options.storage === 's3') {
        const s3Dir = join(dir, 's3');
        await mkdir(s3Dir, { recursive: true });
        const server: S3TestServer = await startS3Server(s3Dir);
        cleanups.push(() => server.stop());
        const client = new S3Client({
          endpoint: server.endpoint,
          region: 'us-east-1',
          forcePathStyle: true,
          credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
        });
        await client.send(new CreateBucketCommand({ Bucket: 'bench-cache' }));
        client.destroy();
        Object.assign(env, {
          STORAGE_DRIVER: 's3',
          S3_ENDPOINT: server.endpoint,
          S3_BUCKET: 'bench-cache',
          S3_REGION: 'us-east-1',
          S3_ACCESS_KEY_ID: server.accessKeyId,
          S3_SECRET_ACCESS_KEY: server.secretAccessKey,
          S3_FORCE_PATH_STYLE: 'true',
        });
        parts.push('S3 storage (s3rver)');
      } else {
        env.STORAGE_DRIVER = 'filesystem';
        parts.push('filesystem storage');
      }

      const port = await findFreePort();
      const url = `http://127.0.0.1:${port}`;
      env.PORT = String(port);
      env.PUBLIC_URL = url;

      const nodeArgs: string[] = [];
      if (options.cpuProfileDir) {
        await mkdir(options.cpuProfileDir, { recursive: true });
        nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`);
      }
      const logPath = join(dir, 'app.log');
      await writeFile(logPath, '');
      const log = createWriteStream(logPath, { flags: 'a' });
      await once(log, 'open');
      const started = options.processes.spawn('app', process.execPath, [...nodeArgs, MAIN], {
        env,
        stdio: ['ignore', log, log],
      });
      cleanups.push(async () => {
        await options.processes.stop(started, 'SIGTERM', 30_000);
        log.close();
      });
      await waitForHttp(`${url}/-/ready`, [200], started, () => logTail(logPath));
      return new AppProcess(url, TEST_ADMIN_TOKEN, env.DATABASE_URL, parts.join(', '), logPath, started, teardown);
    } catch (err) {
      await teardown();
      throw err;
    }
  }

  /** Current and peak resident memory of the app process, from /proc/<pid>/status. */
  memory(): AppMemory {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kib('VmRSS'), peak: kib('VmHWM') };
  }

  /** Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`); false where the kernel refuses. */
  async resetPeak(): Promise<boolean> {
    try {
      await writeFile(`/proc/${this.pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  }

  logTail(): string {
    return logTail(this.logPath);
  }

  /** Graceful stop (SIGTERM), then the scratch database, the Redis keys and the S3 server go too. */
  async stop(): Promise<void> {
    await this.teardown();
  }

  get running(): boolean {
    return this.started.running;
  }
}

function logTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '';
  }
}

/** Deletes the BullMQ keys of this run's queue prefix. */
async function deleteRedisKeys(redisUrl: string, prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
