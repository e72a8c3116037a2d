import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApp } from '../../src/app.factory.js';
import { parseEnvironment } from '../../src/config/environment.js';
import { shutdownProgressOf } from '../../src/shutdown-progress.js';

export interface TestApp {
  app: NestFastifyApplication;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  dataDir: string;
  /** The Postgres database and queue prefix of this app, for a replica started with `replicaOf`. */
  shared: { databaseUrl?: string; queuePrefix?: string };
  close(): Promise<void>;
}

export type DatabaseTarget = 'embedded' | 'postgres';

/**
 * Starts the whole application on a random loopback port with its own DATA_DIR.
 * `database: 'postgres'` uses DATABASE_URL with a fresh schema-less database created for this app.
 * `replicaOf` starts another replica of that app: same database, storage and queue prefix (closing the
 * replica leaves them to the first app).
 */
export async function startTestApp(
  env: Record<string, string | undefined> = {},
  opts: { database?: DatabaseTarget; replicaOf?: TestApp } = {},
): Promise<TestApp> {
  const replicaOf = opts.replicaOf;
  const dataDir = replicaOf?.dataDir ?? mkdtempSync(join(tmpdir(), 'cvr-test-'));
  let dropDatabase: (() => Promise<void>) | undefined;
  let databaseUrl: string | undefined = replicaOf?.shared.databaseUrl;
  if (opts.database === 'postgres' && !replicaOf) {
    ({ url: databaseUrl, drop: dropDatabase } = await createScratchDatabase());
  }
  const queuePrefix = env.REDIS_URL ? (replicaOf?.shared.queuePrefix ?? `cvr-test-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`) : undefined;
  const app = await createApp(
    parseEnvironment({
      LOG_LEVEL: 'error',
      UPSTREAM_ALLOW_PRIVATE: 'true',
      INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      // With Redis, this app runs its own jobs on queues no other test app shares.
      ...(queuePrefix ? { RUN_JOBS: 'true', QUEUE_PREFIX: queuePrefix } : {}),
      ...env,
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      REDIS_URL: env.REDIS_URL,
      PORT: '0',
      HOST: '127.0.0.1',
    }),
  );
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    shared: { databaseUrl, queuePrefix: env.QUEUE_PREFIX ?? queuePrefix },
    async close() {
      await closeReporting(app);
      if (replicaOf) return;
      await dropDatabase?.();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A close taking longer says on stderr, this often, what it still waits for. */
const CLOSE_REPORT_EVERY_MS = 10_000;
/** The test harness's SHUTDOWN_TIMEOUT_MS: below Jest's 60 s hook timeout, with room for the rest of a teardown. */
const CLOSE_GIVE_UP_MS = 35_000;

/**
 * app.close(), as a process's graceful shutdown bounds it: a close that takes longer says what it waits for
 * (ShutdownProgress: the shutdown hooks still running, the HTTP server's close), and one that does not end
 * within CLOSE_GIVE_UP_MS is left behind with a last such line, as the process would exit.
 */
async function closeReporting(app: NestFastifyApplication): Promise<void> {
  const started = Date.now();
  const waitingFor = () => shutdownProgressOf(app)?.describe() ?? 'an untracked close';
  const report = setInterval(() => {
    process.stderr.write(`test app: closing for ${Math.round((Date.now() - started) / 1000)} s, still waiting for ${waitingFor()}\n`);
  }, CLOSE_REPORT_EVERY_MS);
  let giveUp: NodeJS.Timeout | undefined;
  try {
    const closed = await Promise.race([
      app.close().then(() => true),
      new Promise<false>((resolve) => (giveUp = setTimeout(() => resolve(false), CLOSE_GIVE_UP_MS))),
    ]);
    if (!closed) process.stderr.write(`test app: did not close within ${CLOSE_GIVE_UP_MS} ms, left behind; it was waiting for ${waitingFor()}\n`);
  } finally {
    clearInterval(report);
    clearTimeout(giveUp);
  }
}

export const TEST_ADMIN_TOKEN = 'cvrpat-test-admin-token-0123456789abcdef';

/** A fresh database on the DATABASE_URL server so suites never see each other's rows. */
export async function createScratchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.DATABASE_URL;
  if (!base) throw new Error('DATABASE_URL is not set');
  const pg = await import('pg');
  const name = `cvr_test_${process.pid}_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const admin = new pg.default.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.default.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The database targets a suite should run against: always embedded, plus Postgres when DATABASE_URL is set. */
export function databaseTargets(): DatabaseTarget[] {
  return process.env.DATABASE_URL ? ['embedded', 'postgres'] : ['embedded'];
}
