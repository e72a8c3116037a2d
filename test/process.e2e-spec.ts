/**
 * The real processes, as an operator starts them: `node dist/src/main.js` (built by `npm test`'s pretest).
 * Boot with no configuration (embedded database, filesystem storage, in-process queue), reuse of ./data,
 * Postgres + Redis when available, bad configuration failing fast with one line, graceful shutdown.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchDatabase } from './support/test-app.js';
import { findFreePort } from './support/upstream-registry.js';

const MAIN = join(process.cwd(), 'dist/src/main.js');

interface Started {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info', HOST: '127.0.0.1' };
  return { ...env, ...extra };
}

function run(env: NodeJS.ProcessEnv): Omit<Started, 'url'> {
  const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function start(extra: Record<string, string>): Promise<Started> {
  const port = await findFreePort();
  const proc = run(baseEnv({ ...extra, PORT: String(port) }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 45_000;
  let exitCode: number | null | undefined;
  void proc.exited.then((c) => (exitCode = c));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`process exited with ${exitCode}: ${proc.stderr()} ${proc.stdout()}`);
    try {
      const res = await fetch(`${url}/-/health`);
      if (res.ok) return { ...proc, url };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  proc.child.kill('SIGKILL');
  throw new Error(`not healthy within 45 s: ${proc.stderr()}`);
}

/** SIGTERM, then the exit code; a non-zero exit carries the process's last log lines for the failure message. */
async function stop(p: Started): Promise<{ code: number | null; log: string }> {
  p.child.kill('SIGTERM');
  const code = await p.exited;
  const log = code === 0 ? '' : [...p.stdout().trim().split('\n').slice(-15), p.stderr()].join('\n');
  return { code, log };
}

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
      const lines = first.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
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
  withServices('uses Postgres and BullMQ when DATABASE_URL and REDIS_URL are set (skipped without them)', async () => {
    const scratch = await createScratchDatabase();
    try {
      const p = await start({ DATA_DIR: dataDir, DATABASE_URL: scratch.url, REDIS_URL: process.env.REDIS_URL! });
      try {
        expect((await fetch(`${p.url}/-/ready`)).status).toBe(200);
        expect(p.stdout()).toContain('database: postgres, queue: bullmq');
      } finally {
        expect(await stop(p)).toEqual({ code: 0, log: '' });
      }
      expect(existsSync(join(dataDir, 'pgdata'))).toBe(false);
    } finally {
      await scratch.drop();
    }
  }, 120_000);

  it('`npm run migration:run` applies every migration once; a second run is a no-op', async () => {
    const migrate = join(process.cwd(), 'dist/src/database/migrate.js');
    const once = (): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [migrate, 'run'], { env: baseEnv({ DATA_DIR: dataDir }), stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.on('exit', (code) => resolve({ code, out }));
      });
    const first = await once();
    expect(first).toEqual({ code: 0, out: expect.stringMatching(/^applied: Initial\d+/) });
    expect(await once()).toEqual({ code: 0, out: 'no pending migrations\n' });
  }, 60_000);

  it.each([
    [{ STORAGE_DRIVER: 'foo' }, /STORAGE_DRIVER/],
    [{ DATABASE_URL: 'postgres//nope' }, /DATABASE_URL/],
    [{ REDIS_URL: 'redis://127.0.0.1:1' }, /redis|127\.0\.0\.1:1/i],
    [{ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nope' }, /127\.0\.0\.1:1|connect/i],
  ])('exits non-zero with one clear line for %j', async (vars, pattern) => {
    const p = run(baseEnv({ ...vars, DATA_DIR: dataDir, PORT: '0' }));
    const code = await p.exited;
    expect(code).not.toBe(0);
    const stderr = p.stderr().trim();
    expect(stderr).toMatch(pattern);
    expect(stderr.split('\n')).toHaveLength(1);
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 60_000);
});
