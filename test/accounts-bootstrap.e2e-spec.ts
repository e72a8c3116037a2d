/**
 * The admin bootstrap and secret hygiene, on the real process (`node dist/src/main.js`, built by
 * `npm test`'s pretest), reading its real log output:
 * - the first start on an empty database creates `root` with an api token, generated and logged once
 *   (or taken from INITIAL_ADMIN_TOKEN and never logged); a restart creates and logs nothing;
 * - replicas booting together on one Postgres database bootstrap exactly once (with DATABASE_URL);
 * - no secret (tokens, passwords, refresh tokens) used or created through the API reaches the logs.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createScratchDatabase } from './support/test-app.js';
import { findFreePort } from './support/upstream-registry.js';

const MAIN = join(process.cwd(), 'dist/src/main.js');
const GENERATED_TOKEN = /cvrpat-[A-Za-z0-9_-]{43}/g;

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

async function start(env: Record<string, string>): Promise<Started> {
  const port = await findFreePort();
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'debug', HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((c) => (exitCode = c));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 45_000;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`exited with ${exitCode}: ${output}`);
    try {
      if ((await fetch(`${url}/-/health`)).ok) return { child, url, output: () => output, exited };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200)); // the polling interval (until /-/health answers)
  }
  child.kill('SIGKILL');
  throw new Error(`not healthy within 45 s: ${output}`);
}

async function stop(p: Started): Promise<void> {
  p.child.kill('SIGTERM');
  await p.exited;
}

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

async function api(url: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { 'private-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('admin bootstrap and secrets in logs (real process)', () => {
  let dataDir: string;
  beforeAll(() => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm test does it)`);
  });
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'cvr-bootstrap-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('generates the root token on an empty database, logs it exactly once, and never again', async () => {
    const first = await start({ DATA_DIR: dataDir });
    let rootToken: string;
    const secrets: string[] = [];
    try {
      const generated = first.output().match(GENERATED_TOKEN) ?? [];
      expect(generated).toHaveLength(1);
      rootToken = generated[0]!;
      const line = first
        .output()
        .split('\n')
        .find((l) => l.includes(rootToken))!;
      expect(JSON.parse(line)).toMatchObject({ level: 40, context: 'AdminBootstrapService' });

      const me = await api(first.url, rootToken, 'GET', '/api/v4/user');
      expect(me).toMatchObject({ status: 200, body: { username: 'root', is_admin: true } });

      // use secrets every way the API allows, then look for them in the logs
      const user = await api(first.url, rootToken, 'POST', '/api/v4/users', { username: 'logcheck' });
      const pat = await api(first.url, rootToken, 'POST', `/api/v4/users/${user.body.id}/personal_access_tokens`, {
        name: 'x',
        scopes: ['read_virtual_registry'],
      });
      const group = await api(first.url, rootToken, 'POST', '/api/v4/groups', { name: 'logs', path: 'logs' });
      const dt = await api(first.url, rootToken, 'POST', `/api/v4/groups/${group.body.id}/deploy_tokens`, { name: 'x', scopes: ['read_virtual_registry'] });
      const rotated = await api(first.url, rootToken, 'POST', '/api/v4/user/personal_access_tokens', { name: 'to-rotate', scopes: ['api'] });
      const rotatedAgain = await api(first.url, rotated.body.token, 'POST', '/api/v4/personal_access_tokens/self/rotate');
      const login = await fetch(`${first.url}/jwt/auth?service=virtual_registry&offline_token=true`, {
        headers: { authorization: basic('logcheck', pat.body.token) },
      });
      const loginBody = (await login.json()) as { token: string; refresh_token: string };
      const form = await fetch(`${first.url}/jwt/auth`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: loginBody.refresh_token }).toString(),
      });
      expect(form.status).toBe(200);
      const wrong = 'cvrpat-this-is-a-wrong-password-0123456789';
      expect((await fetch(`${first.url}/jwt/auth`, { headers: { authorization: basic(dt.body.username, wrong) } })).status).toBe(401);
      expect(
        (
          await fetch(`${first.url}/jwt/auth`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ grant_type: 'password', username: 'logcheck', password: wrong }).toString(),
          })
        ).status,
      ).toBe(401);
      expect((await fetch(`${first.url}/v2/`, { headers: { authorization: `Bearer ${loginBody.token}` } })).status).toBe(200);
      expect((await api(first.url, wrong, 'GET', '/api/v4/user')).status).toBe(401);
      secrets.push(pat.body.token, dt.body.token, rotated.body.token, rotatedAgain.body.token, loginBody.token, loginBody.refresh_token, wrong);
      for (const s of secrets) expect(typeof s).toBe('string');
    } finally {
      await stop(first);
    }
    const output = first.output();
    expect(output).toContain('"msg":"request"'); // request lines were logged (at debug, everything is)
    for (const secret of secrets) expect(output).not.toContain(secret);
    expect(output.split(rootToken!).length - 1).toBe(1);

    const second = await start({ DATA_DIR: dataDir });
    try {
      expect(second.output()).not.toMatch(/cvrpat-/);
      expect(second.output()).not.toContain('created the administrator');
      expect((await api(second.url, rootToken!, 'GET', '/api/v4/user')).body.username).toBe('root');
    } finally {
      await stop(second);
    }
  }, 120_000);

  it('takes the root token from INITIAL_ADMIN_TOKEN and never logs it', async () => {
    const initial = 'my-own-initial-admin-token-with-enough-entropy';
    const p = await start({ DATA_DIR: dataDir, INITIAL_ADMIN_TOKEN: initial });
    try {
      expect((await api(p.url, initial, 'GET', '/api/v4/user')).body).toMatchObject({ username: 'root', is_admin: true });
      expect(p.output()).toContain('with the api token from INITIAL_ADMIN_TOKEN');
    } finally {
      await stop(p);
    }
    expect(p.output()).not.toContain(initial);
    expect(p.output()).not.toMatch(GENERATED_TOKEN);
  }, 120_000);

  const withPostgres = process.env.DATABASE_URL ? it : it.skip;
  withPostgres(
    'bootstraps once when two replicas start together on one Postgres database (skipped without DATABASE_URL)',
    async () => {
      const scratch = await createScratchDatabase();
      const dirs = [mkdtempSync(join(tmpdir(), 'cvr-replica-')), mkdtempSync(join(tmpdir(), 'cvr-replica-'))];
      const replicas: Started[] = [];
      try {
        replicas.push(...(await Promise.all(dirs.map((d) => start({ DATA_DIR: d, DATABASE_URL: scratch.url })))));
        const generated = replicas.flatMap((r) => r.output().match(GENERATED_TOKEN) ?? []);
        expect(generated).toHaveLength(1);
        for (const r of replicas) expect((await api(r.url, generated[0], 'GET', '/api/v4/user')).body.username).toBe('root');
        const client = new pg.Client({ connectionString: scratch.url });
        await client.connect();
        try {
          expect((await client.query('SELECT username FROM users')).rows).toEqual([{ username: 'root' }]);
          expect((await client.query('SELECT count(*)::int AS n FROM personal_access_tokens')).rows).toEqual([{ n: 1 }]);
        } finally {
          await client.end();
        }
      } finally {
        await Promise.all(replicas.map(stop));
        await scratch.drop();
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
