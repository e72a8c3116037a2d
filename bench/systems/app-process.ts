/**
 * The app as an operator runs it: `node dist/src/main.js` in a child process, in its production
 * configuration when the services are there: Postgres (a scratch database on DATABASE_URL's server),
 * BullMQ on REDIS_URL with RUN_JOBS=true (this one process serves pulls and runs the background jobs), and
 * filesystem storage, or S3 (an s3rver in a child process) with `--s3`. Without DATABASE_URL / REDIS_URL
 * it falls back to the embedded defaults and says so. An AppDeployment also runs several API replicas and
 * worker processes (`dist/src/worker.js`) on the same database, queue prefix, storage and keys.
 */
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnvironment } from '../../src/config/environment.js';
import { openBlobStore, type OpenedBlobStore } from '../../src/storage/blob-store.factory.js';
import { startS3Server, type S3TestServer } from '../../test/support/s3-server.js';
import { createScratchDatabase, TEST_ADMIN_TOKEN } from '../../test/support/test-app.js';
import { findFreePort } from '../../test/support/upstream-registry.js';
import { processesInGroup } from '../process-cpu.js';
import type { StartedProcess, StartedProcesses } from '../started-processes.js';
import { waitForHttp } from './wait-for-http.js';

/** dist/bench/systems/app-process.js -> dist/src/main.js */
const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const WORKER = fileURLToPath(new URL('../../src/worker.js', import.meta.url));

export interface AppDeploymentOptions {
  storage: 'filesystem' | 's3';
  workDir: string;
  processes: StartedProcesses;
  /** Directory under workDir for DATA_DIR and the logs (default `app`). */
  name?: string;
  /**
   * Generate ENCRYPTION_KEY and JWT_PRIVATE_KEY for every process (replicas must share them), rather than
   * letting the app generate its keys into DATA_DIR.
   */
  sharedKeys?: boolean;
  /** Set last, over the deployment's own settings (the offload systems: BLOB_OFFLOAD, or S3 with BLOB_REDIRECT). */
  extraEnv?: Record<string, string>;
  /** How long an API process may take to become ready (default 60 s). */
  readyTimeoutMs?: number;
}

export interface AppProcessOptions extends AppDeploymentOptions {
  /** Write a V8 CPU profile (`--cpu-prof`) of the app into this directory when it exits. */
  cpuProfileDir?: string;
  /** The app's HTTP_WORKERS (default: the app's own default, 1). */
  httpWorkers?: string;
}

/** Of the app's largest process: the app itself, or with HTTP_WORKERS its largest HTTP worker. */
export interface AppMemory {
  /** VmRSS, bytes. */
  rss: number;
  /** VmHWM (peak RSS since start or the last resetPeak()), bytes. */
  peak: number;
}

/**
 * What every process of one deployment shares: the Postgres scratch database, the BullMQ queue prefix on
 * REDIS_URL, the storage (DATA_DIR, or the s3rver), and with `sharedKeys` the encryption and signing keys.
 * API replicas (`startApi`) and worker processes (`startWorker`) started from it run on that; stop() stops
 * them all, then drops the database, deletes the Redis keys and stops the S3 server.
 */
export class AppDeployment {
  private readonly cleanups: (() => Promise<void>)[] = [];
  private readonly started: StartedProcess[] = [];
  private stopping?: Promise<void>;
  /** The deployment's storage, read with the app's own driver (storedObjects). */
  private opened?: OpenedBlobStore;
  /** Database, queue and storage in use (and the generated keys). */
  readonly parts: string[] = [];

  private constructor(
    readonly dir: string,
    private readonly env: Record<string, string>,
    private readonly processes: StartedProcesses,
    private readonly readyTimeoutMs = 60_000,
  ) {}

  /** Postgres URL of the scratch database; undefined with the embedded database. */
  get databaseUrl(): string | undefined {
    return this.env.DATABASE_URL;
  }

  get usesRedis(): boolean {
    return this.env.REDIS_URL !== undefined;
  }

  static async create(options: AppDeploymentOptions): Promise<AppDeployment> {
    const dir = join(options.workDir, options.name ?? 'app');
    const dataDir = join(dir, 'data');
    await mkdir(dataDir, { recursive: true });
    const deployment = new AppDeployment(
      dir,
      {
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
      },
      options.processes,
      options.readyTimeoutMs,
    );
    try {
      await deployment.prepare(options);
      return deployment;
    } catch (err) {
      await deployment.stop();
      throw err;
    }
  }

  private async prepare(options: AppDeploymentOptions): Promise<void> {
    const { env, parts, cleanups } = this;
    if (process.env.DATABASE_URL) {
      const scratch = await createScratchDatabase();
      cleanups.push(() => scratch.drop());
      env.DATABASE_URL = scratch.url;
      parts.push('Postgres (scratch database)');
    } else {
      parts.push('embedded PGlite (set DATABASE_URL for Postgres)');
    }

    if (process.env.REDIS_URL) {
      const prefix = `cvr-bench-${process.pid}-${Date.now()}-${options.name ?? 'app'}`;
      env.REDIS_URL = process.env.REDIS_URL;
      env.QUEUE_PREFIX = prefix;
      cleanups.push(() => deleteRedisKeys(process.env.REDIS_URL!, prefix));
      parts.push('BullMQ on Redis');
    } else {
      parts.push('in-process queue (set REDIS_URL for BullMQ)');
    }

    if (options.storage === 's3') {
      const s3Dir = join(this.dir, 's3');
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

    if (options.sharedKeys) {
      env.ENCRYPTION_KEY = randomBytes(32).toString('hex');
      env.JWT_PRIVATE_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      parts.push('generated ENCRYPTION_KEY and JWT_PRIVATE_KEY');
    }
    if (options.extraEnv) {
      Object.assign(env, options.extraEnv);
      parts.push(
        Object.keys(options.extraEnv)
          .filter((k) => k.startsWith('BLOB_'))
          .map((k) => `${k}=${options.extraEnv![k]}`)
          .join(', '),
      );
    }
    const trial = benchAppEnv();
    if (trial) {
      // An experiment's settings (BENCH_APP_ENV), over everything else, and named in the run's description.
      Object.assign(env, trial);
      parts.push(
        `BENCH_APP_ENV ${Object.keys(trial)
          .map((k) => `${k}=${trial[k]}`)
          .join(', ')}`,
      );
    }
  }

  /**
   * Starts an API replica (`node dist/src/main.js`) named `name` (log: `<name>.log` in `dir`) and waits
   * until it is ready. With Redis, `runJobs` is its RUN_JOBS; the in-process queue always runs the jobs
   * itself. `stopsDeployment`: stopping this process stops the whole deployment (an app running alone).
   */
  async startApi(name: string, options: { runJobs: boolean; cpuProfileDir?: string; stopsDeployment?: boolean; httpWorkers?: string }): Promise<AppProcess> {
    const port = await findFreePort();
    const url = `http://127.0.0.1:${port}`;
    const env: Record<string, string> = { ...this.env, PORT: String(port), PUBLIC_URL: url };
    if (this.usesRedis) env.RUN_JOBS = String(options.runJobs);
    if (options.httpWorkers) env.HTTP_WORKERS = options.httpWorkers;
    const nodeArgs: string[] = [];
    if (options.cpuProfileDir) {
      await mkdir(options.cpuProfileDir, { recursive: true });
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`);
    }
    const { started, logPath } = await this.spawn(name, [...nodeArgs, MAIN], env);
    await waitForHttp(`${url}/-/ready`, [200], started, () => logTail(logPath), this.readyTimeoutMs);
    // `Postgres (scratch database), BullMQ on Redis, RUN_JOBS=true, filesystem storage`
    const jobs = this.usesRedis ? [`RUN_JOBS=${String(options.runJobs)}`] : [];
    const [database, queue, ...rest] = this.parts;
    const workers = httpWorkersOf(env);
    const processes = workers > 1 ? [`HTTP_WORKERS=${env.HTTP_WORKERS} (${workers} HTTP worker processes)`] : [];
    const configuration = [database, queue, ...jobs, ...processes, ...rest].join(', ');
    const teardown = options.stopsDeployment ? () => this.stop() : undefined;
    return new AppProcess(url, TEST_ADMIN_TOKEN, this.databaseUrl, configuration, logPath, started, this.processes, this, teardown);
  }

  /** Starts a worker process (`node dist/src/worker.js`, needs Redis) and waits for its "started" log line. */
  async startWorker(name: string): Promise<StartedProcess> {
    if (!this.usesRedis) throw new Error('the worker needs REDIS_URL');
    // LOG_LEVEL info: the worker says when it processes jobs, and has no HTTP endpoint to poll.
    const { started, logPath } = await this.spawn(name, [WORKER], { ...this.env, LOG_LEVEL: 'info' });
    await waitForLogLine(logPath, 'worker started', started);
    return started;
  }

  /** How many of `digests` have an object in the deployment's storage (filesystem or S3, read as the app reads it). */
  async storedObjects(digests: readonly string[]): Promise<number> {
    // The app's own driver, from the app's own environment as its config validator reads it.
    const { store } = (this.opened ??= (() => {
      const env = parseEnvironment(this.env);
      return openBlobStore(env.storage, env.app.dataDir);
    })());
    let stored = 0;
    for (const digest of digests) if (await store.stat(digest)) stored += 1;
    return stored;
  }

  /** Stops every process started from this deployment (in parallel), then its database, Redis keys and S3 server. */
  async stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.opened?.close();
      await Promise.all(this.started.map((p) => this.processes.stop(p, 'SIGTERM', 30_000)));
      for (const cleanup of [...this.cleanups].reverse()) await cleanup().catch(() => undefined);
    })();
    return this.stopping;
  }

  private async spawn(name: string, args: string[], env: Record<string, string>): Promise<{ started: StartedProcess; logPath: string }> {
    const logPath = join(this.dir, `${name.replace(/\s+/g, '-')}.log`);
    await writeFile(logPath, '');
    const log = createWriteStream(logPath, { flags: 'a' });
    await once(log, 'open');
    if (this.stopping) {
      log.close();
      throw new Error(`${name}: the deployment is stopping`);
    }
    const started = this.processes.spawn(name, process.execPath, args, { env, stdio: ['ignore', log, log] });
    this.started.push(started);
    void started.exited.finally(() => log.close());
    return { started, logPath };
  }
}

export class AppProcess {
  constructor(
    readonly url: string,
    readonly adminToken: string,
    /** Postgres URL of the app's scratch database; undefined with the embedded database. */
    readonly databaseUrl: string | undefined,
    /** One line: database, queue and storage in use. */
    readonly configuration: string,
    readonly logPath: string,
    private readonly started: StartedProcess,
    private readonly processes: StartedProcesses,
    /** The deployment the process runs on (its storage). */
    private readonly deployment: AppDeployment,
    /** Stops what the process runs on too (its own deployment); by default only the process stops. */
    private readonly teardown?: () => Promise<void>,
  ) {}

  get pid(): number {
    return this.started.pid;
  }

  /** The app alone on a deployment of its own, running the background jobs itself (RUN_JOBS=true). */
  static async start(options: AppProcessOptions): Promise<AppProcess> {
    const deployment = await AppDeployment.create(options);
    try {
      return await deployment.startApi('app', {
        runJobs: true,
        cpuProfileDir: options.cpuProfileDir,
        stopsDeployment: true,
        httpWorkers: options.httpWorkers,
      });
    } catch (err) {
      await deployment.stop();
      throw err;
    }
  }

  /** How many of `digests` have an object in the storage of the app's deployment. */
  storedObjects(digests: readonly string[]): Promise<number> {
    return this.deployment.storedObjects(digests);
  }

  /** Current and peak resident memory of the app process, from /proc/<pid>/status. */
  memory(): AppMemory {
    let largest: AppMemory = { rss: NaN, peak: NaN };
    for (const pid of this.ownProcesses()) {
      let status: string;
      try {
        status = readFileSync(`/proc/${pid}/status`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      const memory = { rss: kib('VmRSS'), peak: kib('VmHWM') };
      if (!(memory.peak <= largest.peak)) largest = memory;
    }
    return largest;
  }

  /** Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`) of every process; false where the kernel refuses. */
  async resetPeak(): Promise<boolean> {
    try {
      for (const pid of this.ownProcesses()) await writeFile(`/proc/${pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  }

  /** The app's processes: it, and with HTTP_WORKERS its workers (its process group). */
  private ownProcesses(): number[] {
    const pid = this.pid;
    return [pid, ...processesInGroup(pid).filter((p) => p !== pid)];
  }

  logTail(): string {
    return logTail(this.logPath);
  }

  /** Graceful stop (SIGTERM); an app started alone takes its scratch database, Redis keys and S3 server with it. */
  async stop(): Promise<void> {
    if (this.teardown) await this.teardown();
    else await this.processes.stop(this.started, 'SIGTERM', 30_000);
  }

  get running(): boolean {
    return this.started.running;
  }
}

/** Polls the log at `path` until it contains `text`; fails early if `process` exits. */
async function waitForLogLine(path: string, text: string, process: StartedProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (readFileSync(path, 'utf8').includes(text)) return;
    if (!process.running) throw new Error(`${process.name} exited during startup (${String(await process.exited)}):\n${logTail(path)}`);
    if (Date.now() > deadline) throw new Error(`${process.name} did not log "${text}" within ${timeoutMs} ms:\n${logTail(path)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
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

/** The HTTP worker processes an app started with `env` runs (HTTP_WORKERS as the app resolves it). */
function httpWorkersOf(env: Record<string, string>): number {
  if (env.HTTP_WORKERS !== 'auto') return Number(env.HTTP_WORKERS ?? 1);
  return env.DATABASE_URL && env.REDIS_URL ? availableParallelism() : 1;
}

/**
 * BENCH_APP_ENV, a JSON object of environment variables every app process of the run gets on top of its
 * own (an A/B of one setting, e.g. `{"BLOB_SENDFILE":"false"}`); undefined when unset.
 */
function benchAppEnv(): Record<string, string> | undefined {
  const raw = process.env.BENCH_APP_ENV;
  if (!raw) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error('BENCH_APP_ENV must be a JSON object of strings, e.g. {"BLOB_SENDFILE":"false"}');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
    throw new Error('BENCH_APP_ENV must be a JSON object of strings, e.g. {"BLOB_SENDFILE":"false"}');
  }
  return parsed as Record<string, string>;
}
