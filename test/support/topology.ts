/**
 * The production topology of docker-compose.yml, made of the real built processes: the migration command
 * once, then `node dist/src/worker.js` and two (or more) `node dist/src/main.js` API replicas, all on one
 * scratch Postgres database (DATABASE_URL), one Redis (REDIS_URL, with a QUEUE_PREFIX of their own), S3
 * storage on an s3rver, the same ENCRYPTION_KEY / JWT_PRIVATE_KEY, and a real upstream registry. Each
 * process has its own DATA_DIR (as each compose container has its own /app/data) and a log file.
 *
 * Tests drive it through the replicas' URLs and observe it as an operator would: the database, the
 * bucket, the queue's jobs in Redis, the processes' logs and the upstream's access log.
 */
import { ListObjectsV2Command, CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import pg from 'pg';
import { QueueName } from '../../src/jobs/queue-driver.js';
import type { ConsistencyCheckResult } from '../../src/lifecycle/consistency-check.js';
import { accessLog } from './access-log.js';
import {
  DIST,
  outputTail,
  processEnv,
  runAppCommand,
  spawnAppProcess,
  stopAppProcess,
  waitForOutput,
  waitUntilServing,
  type AppProcess,
} from './app-process.js';
import { startS3Server } from './s3-server.js';
import { realServices } from './services.js';
import { TEST_ADMIN_TOKEN, createScratchDatabase } from './test-app.js';
import { findFreePort, startUpstreamRegistry, type UpstreamRegistry } from './upstream-registry.js';

/** Why the topology cannot run here, or undefined when it can (Postgres, Redis and docker-registry are needed). */
export function topologySkipReason(): string | undefined {
  const missing = [
    realServices.postgresUrl ? undefined : 'DATABASE_URL is unset',
    realServices.redisUrl ? undefined : 'REDIS_URL is unset',
    realServices.hasBinary('docker-registry') ? undefined : 'docker-registry is not installed (bash .ci/install-packages.sh)',
  ].filter(Boolean);
  return missing.length ? missing.join(', ') : undefined;
}

/** What the worker logs once it is consuming jobs. */
export const WORKER_STARTED = 'worker started: processing background jobs';
/** What an API replica logs at boot when (RUN_JOBS=auto with Redis) it leaves the jobs to the workers. */
export const API_RUNS_NO_JOBS = 'jobs run in the worker processes';

/** One process of the topology; start/stop/kill/restart keep its name, port, DATA_DIR and log file. */
export interface TopologyProcess {
  readonly name: string;
  readonly role: 'api' | 'worker';
  /** `http://127.0.0.1:<port>` for an API replica (the same port across restarts). */
  readonly url: string;
  readonly logFile: string;
  /** The current (or last) run; undefined before the first start. */
  readonly process: AppProcess | undefined;
  readonly running: boolean;
  /** Starts it (API: until /-/ready answers; worker: until it logs WORKER_STARTED). */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit; resolves with the exit code and, if non-zero, the last lines. */
  stop(): Promise<{ code: number | null; log: string }>;
  /** kill -9 and wait for the exit. */
  kill(): Promise<void>;
  /** stop() if running, then start(). */
  restart(): Promise<void>;
  /** Everything it logged, all runs (the log file). */
  log(): string;
  /** The log as JSON objects (non-JSON lines are skipped). */
  logLines(): Record<string, unknown>[];
}

export interface TopologyJob {
  id: string;
  name: string;
  data: unknown;
  state: string;
  attemptsMade: number;
  failedReason?: string;
  processedOn?: number;
  finishedOn?: number;
}

export interface Topology {
  readonly api: TopologyProcess[];
  readonly worker: TopologyProcess;
  readonly upstream: UpstreamRegistry;
  /** The environment every process gets (without PORT and DATA_DIR). */
  readonly env: Readonly<NodeJS.ProcessEnv>;
  readonly databaseUrl: string;
  readonly queuePrefix: string;
  readonly bucket: string;
  readonly s3Client: S3Client;
  /** Where the log files are. */
  readonly logDir: string;
  /** Another process of the same topology (e.g. a second worker), not started yet; close() stops it too. */
  addProcess(role: 'api' | 'worker', name: string): Promise<TopologyProcess>;
  /** One query on the topology's database. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Every object key in the bucket (committed blobs are `blobs/sha256/<ab>/<hex>`, temporary ones `_uploads/<id>`). */
  objectKeys(): Promise<string[]>;
  /** The key of a committed blob. */
  blobKey(digest: string): string;
  /** Jobs BullMQ keeps for this topology (waiting, active, delayed, completed, failed), optionally of one name. */
  jobs(name?: string): Promise<TopologyJob[]>;
  /** Successful blob GETs the upstream answered, by digest (since `since`, a value of upstream.mark(); default: since upstream.reset()). */
  upstreamBlobGets(since?: number): Promise<Map<string, number>>;
  /** `node dist/src/lifecycle/consistency-check.js --json [...args]` against the topology's database and bucket. */
  consistencyCheck(args?: string[]): Promise<{ code: number | null; report?: ConsistencyCheckResult; stdout: string; stderr: string }>;
  /** The last lines of every process's log, for failure messages. */
  logTails(lines?: number): string;
  /** Stops every process (kill -9 after 30 s), the upstream and the s3rver, drops the database, removes the queue keys. */
  close(): Promise<void>;
}

export interface TopologyOptions {
  /** API replicas (default 2, as in docker-compose.yml). */
  apiReplicas?: number;
  /** Extra variables for every process (e.g. ORPHAN_GRACE_PERIOD_MS). */
  env?: Record<string, string>;
  /** Log level of every process (default info: boot lines, job summaries, one line per request). */
  logLevel?: string;
}

/** ENCRYPTION_KEY and JWT_PRIVATE_KEY as an operator makes them (`openssl rand -hex 32`, an EC P-256 PEM). */
export function generateSecrets(): { ENCRYPTION_KEY: string; JWT_PRIVATE_KEY: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    ENCRYPTION_KEY: randomBytes(32).toString('hex'),
    JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

export async function startTopology(options: TopologyOptions = {}): Promise<Topology> {
  const reason = topologySkipReason();
  if (reason) throw new Error(`the topology cannot run: ${reason}`);
  const root = mkdtempSync(join(tmpdir(), 'cvr-topology-'));
  const logDir = join(root, 'logs');
  await mkdir(logDir);
  const cleanups: (() => Promise<void>)[] = [async () => rmSync(root, { recursive: true, force: true })];
  const processes: TopologyProcess[] = [];
  let s3Client: S3Client | undefined;
  let db: pg.Client | undefined;

  const close = async (): Promise<void> => {
    await Promise.all(processes.map((p) => p.stop().catch(() => undefined)));
    await db?.end().catch(() => undefined);
    s3Client?.destroy();
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };

  try {
    const queuePrefix = `cvr-topology-${process.pid}-${Date.now()}-${randomBytes(3).toString('hex')}`;
    const scratch = await createScratchDatabase();
    cleanups.push(() => scratch.drop());
    const upstream = await startUpstreamRegistry();
    cleanups.push(() => upstream.close());
    const s3 = await startS3Server(join(root, 's3rver'));
    cleanups.push(() => s3.stop());
    const bucket = 'registry-cache';
    s3Client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    // Provisioned beforehand, like compose's minio-bucket service.
    await s3Client.send(new CreateBucketCommand({ Bucket: bucket }));
    const redisUrl = realServices.redisUrl!;
    cleanups.push(() => removeQueueKeys(redisUrl, queuePrefix));

    const env: NodeJS.ProcessEnv = processEnv({
      DATABASE_URL: scratch.url,
      // As in compose: the migrate command ran before any replica starts.
      DATABASE_MIGRATIONS_RUN: 'false',
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: queuePrefix,
      STORAGE_DRIVER: 's3',
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: bucket,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: s3.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
      ...generateSecrets(),
      INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      UPSTREAM_ALLOW_PRIVATE: 'true',
      LOG_LEVEL: options.logLevel ?? 'info',
      ...options.env,
    });

    const migrated = await runAppCommand(DIST.migrate, ['run'], { ...env, DATA_DIR: join(root, 'migrate') });
    if (migrated.code !== 0) throw new Error(`migrations failed (exit ${migrated.code}): ${migrated.stderr}${migrated.stdout}`);

    const addProcess = async (role: 'api' | 'worker', name: string): Promise<TopologyProcess> => {
      if (processes.some((p) => p.name === name)) throw new Error(`a process named ${name} exists already`);
      const port = role === 'api' ? await findFreePort() : undefined;
      const p = topologyProcess(role, name, port, { ...env, DATA_DIR: join(root, name) }, join(logDir, `${name}.log`));
      processes.push(p);
      return p;
    };

    const worker = await addProcess('worker', 'worker');
    const api: TopologyProcess[] = [];
    for (let i = 1; i <= (options.apiReplicas ?? 2); i++) api.push(await addProcess('api', `api-${i}`));
    // Compose starts the replicas and the worker together once migrations are done.
    await Promise.all([worker, ...api].map((p) => p.start()));

    db = new pg.Client({ connectionString: scratch.url });
    await db.connect();
    const client = db;
    const s3c = s3Client;

    const topology: Topology = {
      api,
      worker,
      upstream,
      env,
      databaseUrl: scratch.url,
      queuePrefix,
      bucket,
      s3Client: s3c,
      logDir,
      addProcess,
      async query<T>(sql: string, params: unknown[] = []) {
        return (await client.query(sql, params)).rows as T[];
      },
      async objectKeys() {
        const keys: string[] = [];
        let token: string | undefined;
        do {
          const page = await s3c.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
          for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        return keys;
      },
      blobKey(digest: string) {
        const hex = digest.replace(/^sha256:/, '');
        return `blobs/sha256/${hex.slice(0, 2)}/${hex}`;
      },
      jobs: (name?: string) => queueJobs(redisUrl, queuePrefix, name),
      async upstreamBlobGets(since?: number) {
        const counts = new Map<string, number>();
        for (const e of accessLog.blobDownloads(await upstream.requests(since))) counts.set(e.reference!, (counts.get(e.reference!) ?? 0) + 1);
        return counts;
      },
      async consistencyCheck(args: string[] = []) {
        const result = await runAppCommand(DIST.consistencyCheck, ['--json', ...args], { ...env, DATA_DIR: join(root, 'consistency-check') });
        let report: ConsistencyCheckResult | undefined;
        try {
          report = JSON.parse(result.stdout) as ConsistencyCheckResult;
        } catch {
          // not JSON: a usage or boot error (code 2), stderr says why
        }
        return { ...result, report };
      },
      logTails(lines = 25) {
        return processes.map((p) => `--- ${p.name} (${p.logFile}) ---\n${tail(p.log(), lines)}`).join('\n');
      },
      close,
    };
    return topology;
  } catch (err) {
    const logs = processes.map((p) => `--- ${p.name} ---\n${tail(p.log(), 25)}`).join('\n');
    await close();
    throw new Error(`${(err as Error).message}${logs ? `\n${logs}` : ''}`, { cause: err });
  }
}

function tail(text: string, lines: number): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

function topologyProcess(role: 'api' | 'worker', name: string, port: number | undefined, env: NodeJS.ProcessEnv, logFile: string): TopologyProcess {
  let current: AppProcess | undefined;
  const url = port ? `http://127.0.0.1:${port}` : '';
  const self: TopologyProcess = {
    name,
    role,
    url,
    logFile,
    get process() {
      return current;
    },
    get running() {
      return !!current?.running;
    },
    async start() {
      if (current?.running) throw new Error(`${name} is running already`);
      current = spawnAppProcess(role === 'api' ? DIST.api : DIST.worker, port ? { ...env, PORT: String(port) } : env, { logFile });
      if (role === 'api') await waitUntilServing(current, url, { timeoutMs: 60_000 });
      else await waitForOutput(current, WORKER_STARTED, 60_000);
    },
    async stop() {
      if (!current) return { code: null, log: '' };
      return stopAppProcess(current, { timeoutMs: 30_000 });
    },
    async kill() {
      if (current?.running) {
        current.child.kill('SIGKILL');
        await current.exited;
      }
    },
    async restart() {
      await self.stop();
      await self.start();
    },
    log() {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return current ? outputTail(current, 1000) : '';
      }
    },
    logLines() {
      return self
        .log()
        .split('\n')
        .flatMap((line) => {
          try {
            const parsed = JSON.parse(line) as unknown;
            return parsed && typeof parsed === 'object' ? [parsed as Record<string, unknown>] : [];
          } catch {
            return [];
          }
        });
    },
  };
  return self;
}

const QUEUE_NAMES: readonly string[] = Object.values(QueueName);

async function queueJobs(redisUrl: string, prefix: string, name?: string): Promise<TopologyJob[]> {
  const out: TopologyJob[] = [];
  for (const queueName of QUEUE_NAMES) {
    const queue = new Queue(queueName, { connection: { url: redisUrl }, prefix });
    try {
      for (const state of ['waiting', 'active', 'delayed', 'completed', 'failed'] as const) {
        for (const job of await queue.getJobs([state], 0, 2000)) {
          if (!job || (name && job.name !== name)) continue;
          out.push({
            id: job.id!,
            name: job.name,
            data: job.data,
            state,
            attemptsMade: job.attemptsMade,
            failedReason: job.failedReason || undefined,
            processedOn: job.processedOn,
            finishedOn: job.finishedOn,
          });
        }
      }
    } finally {
      await queue.close();
    }
  }
  return out;
}

/** Deletes this topology's queues (only keys under its own prefix; never anything else in the shared Redis). */
export async function removeQueueKeys(redisUrl: string, prefix: string): Promise<void> {
  for (const queueName of QUEUE_NAMES) {
    const queue = new Queue(queueName, { connection: { url: redisUrl }, prefix });
    try {
      await queue.obliterate({ force: true });
    } finally {
      await queue.close();
    }
  }
}
