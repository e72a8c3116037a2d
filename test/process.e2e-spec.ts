/**
 * The real processes, as an operator starts them: `node dist/src/main.js` (built by `npm test`'s pretest).
 * Boot with no configuration (embedded database, filesystem storage, in-process queue), reuse of ./data,
 * Postgres + Redis when available, bad configuration failing fast with one line, graceful shutdown.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST, processEnv, runAppCommand, spawnAppProcess, stopAppProcess, waitUntilServing, type AppProcess } from './support/app-process.js';
import { createScratchDatabase } from './support/test-app.js';
import { findFreePort } from './support/upstream-registry.js';

type Started = AppProcess & { url: string };

function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return processEnv({ LOG_LEVEL: 'info', ...extra });
}

function run(env: NodeJS.ProcessEnv): AppProcess {
  return spawnAppProcess(DIST.api, env);
}

async function start(extra: Record<string, string>): Promise<Started> {
  const port = await findFreePort();
  const proc = run(baseEnv({ ...extra, PORT: String(port) }));
  const url = `http://127.0.0.1:${port}`;
  await waitUntilServing(proc, url, { path: '/-/health', timeoutMs: 45_000 });
  return Object.assign(proc, { url });
}

/** SIGTERM, then the exit code; a non-zero exit carries the process's last log lines for the failure message. */
const stop = (p: Started): Promise<{ code: number | null; log: string }> => stopAppProcess(p);

describe('the API process', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'cvr-proc-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts with no configuration, is ready, serves Swagger UI, keeps its database in DATA_DIR and reuses it', async () => {
    const first = await start({ DATA_DIR: dataDir });
    try {
      const ready = await fetch(`${first.url}/-/ready`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ok', checks: { database: 'ok', queue: 'ok', storage: 'ok' } });

      const docs = await fetch(`${first.url}/api/docs`);
      expect(docs.status).toBe(200);
      const html = await docs.text();
      expect(html).toContain('swagger-ui');
      const assets = [...html.matchAll(/(?:src|href)="\.?\/?([^"]+\.(?:js|css))"/g)].map((m) => m[1]);
      expect(assets.length).toBeGreaterThan(0);
      for (const asset of assets) {
        const res = await fetch(new URL(asset, `${first.url}/api/docs/`));
        // read the body: an unread response keeps its connection busy, and shutdown waits for busy connections
        const bytes = (await res.arrayBuffer()).byteLength;
        expect([asset, res.status, bytes > 0]).toEqual([asset, 200, true]);
      }
      const openapi = await fetch(`${first.url}/api/docs-json`);
      expect(openapi.status).toBe(200);
      expect(((await openapi.json()) as { openapi: string }).openapi).toMatch(/^3\./);

      const metrics = await (await fetch(`${first.url}/metrics`)).text();
      expect(metrics).toContain('http_requests_total');
      expect(metrics).toContain('process_resident_memory_bytes');

      // JSON logs, one object per line, with a request id on request lines
      const lines = first
        .stdout()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.some((l) => l.msg === 'request' && typeof l.reqId === 'string')).toBe(true);
    } finally {
      expect(await stop(first)).toEqual({ code: 0, log: '' });
    }
    expect(existsSync(join(dataDir, 'pgdata'))).toBe(true);
    expect(readdirSync(join(dataDir, 'pgdata')).length).toBeGreaterThan(0);

    const second = await start({ DATA_DIR: dataDir });
    try {
      expect((await fetch(`${second.url}/-/ready`)).status).toBe(200);
      expect(second.stdout()).not.toContain('applied');
    } finally {
      expect(await stop(second)).toEqual({ code: 0, log: '' });
    }
  }, 120_000);

  const withServices = process.env.DATABASE_URL && process.env.REDIS_URL ? it : it.skip;

  /** The process on a scratch Postgres database and REDIS_URL, given to `use`, then stopped (exit 0) and the database dropped. */
  const withServicesApp = async (use: (p: Started) => Promise<void>): Promise<void> => {
    const scratch = await createScratchDatabase();
    try {
      const p = await start({ DATA_DIR: dataDir, DATABASE_URL: scratch.url, REDIS_URL: process.env.REDIS_URL! });
      try {
        await use(p);
      } finally {
        expect(await stop(p)).toEqual({ code: 0, log: '' });
      }
    } finally {
      await scratch.drop();
    }
  };

  withServices(
    'an idle API process sleeps: its main thread wakes fewer than 50 times a second (skipped without Postgres and Redis)',
    () =>
      withServicesApp(async (p) => {
        const wakeups = () => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${p.pid}/task/${p.pid}/status`, 'utf8'))![1]);
        // deliberate: a second for boot-time work to end, then two seconds of idleness counted
        await new Promise((r) => setTimeout(r, 1000));
        const before = wakeups();
        await new Promise((r) => setTimeout(r, 2000));
        // sampling the event loop every 10 ms (prom-client's default), it woke ~200 times in these 2 s
        expect(wakeups() - before).toBeLessThan(100);
      }),
    120_000,
  );

  withServices(
    'uses Postgres and BullMQ when DATABASE_URL and REDIS_URL are set (skipped without them)',
    async () => {
      await withServicesApp(async (p) => {
        expect((await fetch(`${p.url}/-/ready`)).status).toBe(200);
        expect(p.stdout()).toContain('database: postgres, queue: bullmq');
      });
      expect(existsSync(join(dataDir, 'pgdata'))).toBe(false);
    },
    120_000,
  );

  it('`npm run migration:run` applies every migration once; a second run is a no-op', async () => {
    const once = async (): Promise<{ code: number | null; out: string }> => {
      const { code, stdout } = await runAppCommand(DIST.migrate, ['run'], baseEnv({ DATA_DIR: dataDir }));
      return { code, out: stdout };
    };
    const first = await once();
    expect(first).toEqual({ code: 0, out: expect.stringMatching(/^applied: Initial\d+/) });
    expect(await once()).toEqual({ code: 0, out: 'no pending migrations\n' });
  }, 60_000);

  it.each([
    [{ STORAGE_DRIVER: 'foo' }, /STORAGE_DRIVER/],
    [{ DATABASE_URL: 'postgres//nope' }, /DATABASE_URL/],
    [{ REDIS_URL: 'redis://127.0.0.1:1' }, /redis|127\.0\.0\.1:1/i],
    [{ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nope' }, /127\.0\.0\.1:1|connect/i],
  ])(
    'exits non-zero with one clear line for %j',
    async (vars, pattern) => {
      const p = run(baseEnv({ ...vars, DATA_DIR: dataDir, PORT: '0' }));
      const code = await p.exited;
      expect(code).not.toBe(0);
      const stderr = p.stderr().trim();
      expect(stderr).toMatch(pattern);
      expect(stderr.split('\n')).toHaveLength(1);
      expect(stderr).not.toMatch(/\n\s+at /);
    },
    60_000,
  );
});
