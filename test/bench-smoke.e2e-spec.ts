/**
 * The benchmark's smoke mode (`npm run bench -- --smoke`) keeps working: tiny images, one round, every
 * system it can start, a full table, JSON results, and nothing left running or on disk afterwards. With
 * DATABASE_URL and REDIS_URL it also runs the replica rows (two app replicas and a worker).
 * Runs the built entry point (dist/bench/run.js, built by `npm test`'s pretest) as a user would.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realServices } from './support/services.js';

const BENCH = join(process.cwd(), 'dist/bench/run.js');
const canRun = realServices.hasBinary('docker-registry') && realServices.hasBinary('skopeo');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry or skopeo is not installed; bash .ci/install-packages.sh)';
const hasNginx = realServices.hasBinary('nginx');
/** The replica rows run on Postgres and Redis (two replicas and a worker share them). */
const hasReplicaServices = Boolean(realServices.postgresUrl && realServices.redisUrl);
const REPLICA_ROWS = ['replicas-wall-one', 'replicas-wall-two', 'replicas-wall', 'replicas-upstream-bytes'];
/** Rows of the offload systems only (issue 13): the app behind nginx with x-accel, the app with S3 presigned redirects. */
const OFFLOAD_ROWS = ['offload-warm-pull-cpu'];
const OFFLOAD_SYSTEMS = [...(hasNginx ? ['app-x-accel'] : []), 'app-presigned'];

interface SmokeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runBench(args: string[]): Promise<SmokeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BENCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Command lines and environments of every process on the machine that mention `text`. */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (cmdline.includes(text) || environ.includes(text)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return found;
}

/** The bench's own failure line and stack (`bench failed: ...`), first: a CI log may keep only the start of a message. */
function failureOf(stderr: string): string {
  const at = stderr.lastIndexOf('bench failed:');
  return at >= 0 ? stderr.slice(at, at + 1500) : '(no "bench failed:" line; see the last lines)';
}

suite(`benchmark smoke mode${reason}`, () => {
  let resultsDir: string;
  let run: SmokeRun;

  beforeAll(async () => {
    if (!hasNginx) process.stdout.write('bench smoke: nginx is not installed, the nginx peer is skipped (apt-get install nginx-light)\n');
    resultsDir = mkdtempSync(join(tmpdir(), 'cvr-bench-smoke-'));
    run = await runBench(['--smoke', '--results-dir', resultsDir]);
    if (run.code !== 0) {
      // 2 of the last 8 CI runs failed a smoke run that passes alone (once Distribution 2.8's proxy answered
      // a client 500; once near the end, cause unknown: the CI log kept only the start of the message, which
      // is why failureOf now comes first). This suite checks the harness, so a failure must repeat to count;
      // the first one stays in the log.
      process.stdout.write(`bench smoke: the first run exited ${run.code}, running it once more: ${failureOf(run.stderr)}\n`);
      run = await runBench(['--smoke', '--results-dir', resultsDir]);
    }
    // Four deployments of the app boot (the app, the replicas', the two offload systems'): minutes on a busy machine.
  }, 800_000);

  afterAll(() => rmSync(resultsDir, { recursive: true, force: true }));

  it('exits 0 and prints the table with every row: measured for each system, or skipped in smoke mode', () => {
    if (run.code !== 0) throw new Error(`bench --smoke exited ${run.code}: ${failureOf(run.stderr)}\n\nlast lines:\n${run.stderr.slice(-3000)}`);
    expect(run.stdout).toContain('Medians');
    expect(run.stdout).toContain('Per-round values');
    for (const title of [
      'cold pull',
      'warm pull',
      'blob GET',
      'manifest GET by tag',
      'manifest GET by digest',
      'concurrent cold pulls',
      'split across 2 app replicas',
    ]) {
      expect(run.stdout).toContain(title);
    }
    expect(run.stdout).toMatch(/peak RSS.*skipped: smoke mode/);
    expect(run.stdout).toMatch(/1,000,000 cache rows.*skipped: smoke mode/);
    if (!hasReplicaServices) expect(run.stdout).toMatch(/2 app replicas.*skipped: needs DATABASE_URL and REDIS_URL/);
  });

  it('writes the JSON report with per-round values of every system it ran, and the SPEC verdicts', () => {
    const report = JSON.parse(readFileSync(join(resultsDir, 'smoke-latest.json'), 'utf8')) as {
      mode: string;
      rounds: number;
      skippedSystems: Record<string, string>;
      rows: { id: string; series: Record<string, number[]>; skipped?: string; target?: { met: boolean | null; measured: number | null } }[];
    };
    expect(report.mode).toBe('smoke');
    expect(report.rounds).toBe(1);
    const systems = ['direct', 'app', 'distribution', ...(hasNginx ? ['nginx'] : [])];
    if (!hasNginx) expect(Object.keys(report.skippedSystems)).toEqual(['nginx', 'app-x-accel']);
    const measured = report.rows.filter((r) => !r.skipped && !REPLICA_ROWS.includes(r.id) && !OFFLOAD_ROWS.includes(r.id));
    expect(measured.map((r) => r.id)).toEqual(
      expect.arrayContaining(['cold-pull-big', 'warm-pull-big', 'blob-get', 'manifest-rate-tag', 'concurrent-wall', 'concurrent-upstream-bytes']),
    );
    for (const row of measured) {
      // CPU rows count 10 ms clock ticks: a smoke image's pull may cost a peer none at all.
      const cpuRow = row.id.startsWith('cpu-');
      for (const system of systems) {
        expect({ row: row.id, system, value: row.series[system]?.[0] }).toEqual({ row: row.id, system, value: expect.any(Number) });
        if (cpuRow) expect(row.series[system][0]).toBeGreaterThanOrEqual(0);
        else expect(row.series[system][0]).toBeGreaterThan(0);
      }
      if (row.target && !cpuRow) expect(typeof row.target.met).toBe('boolean');
    }
    // The app always spends measurable CPU on a cold pull (token, lookups, the fill and its hash).
    expect(report.rows.find((r) => r.id === 'cpu-cold-big')!.series.app[0]).toBeGreaterThan(0);
    // and so do the app and the upstream on 8 concurrent cold pulls (8 x the image served)
    const concurrentCpu = report.rows.find((r) => r.id === 'cpu-concurrent')!;
    expect([concurrentCpu.series.app[0], concurrentCpu.series.direct[0]]).toEqual([expect.any(Number), expect.any(Number)]);
    expect(concurrentCpu.series.app[0]).toBeGreaterThan(0);
    // The whole machine was busy while 8 skopeo clients ran (their own work at least), for every system.
    const machineBusy = report.rows.find((r) => r.id === 'cpu-concurrent-machine-busy')!;
    for (const system of systems) expect({ system, busy: machineBusy.series[system][0] }).toEqual({ system, busy: expect.any(Number) });
    expect(Math.min(...systems.map((system) => machineBusy.series[system][0]))).toBeGreaterThan(0);
    // The one verdict smoke mode can settle outright: 8 concurrent cold pulls fetch each blob once.
    const perBlob = report.rows.find((r) => r.id === 'concurrent-max-gets')!;
    expect(perBlob.series.app[0]).toBe(1);
    expect(perBlob.series.direct[0]).toBe(8);
    expect(report.rows.filter((r) => r.skipped && !REPLICA_ROWS.includes(r.id)).map((r) => r.skipped)).toEqual(Array(4).fill('smoke mode'));
  });

  it('measures the offload systems: warm blob GET beside the others, and CPU per GiB of a warm pull', () => {
    const report = JSON.parse(readFileSync(join(resultsDir, 'smoke-latest.json'), 'utf8')) as {
      rows: { id: string; series: Record<string, number[]>; skipped?: string; note?: string }[];
    };
    for (const id of ['blob-get', ...OFFLOAD_ROWS]) {
      const row = report.rows.find((r) => r.id === id)!;
      for (const system of OFFLOAD_SYSTEMS) {
        expect({ row: id, system, value: row.series[system]?.[0] }).toEqual({ row: id, system, value: expect.any(Number) });
        expect(row.series[system][0]).toBeGreaterThan(0);
      }
    }
    expect(report.rows.find((r) => r.id === 'offload-warm-pull-cpu')!.note).toMatch(/app-presigned: app \+ s3rver/);
    expect(run.stdout).toContain('app, S3 presigned');
  });

  it('measures 8 concurrent cold pulls split across 2 app replicas against 1 replica, or says what it needs', () => {
    const report = JSON.parse(readFileSync(join(resultsDir, 'smoke-latest.json'), 'utf8')) as {
      rows: { id: string; series: Record<string, number[]>; skipped?: string; target?: { met: boolean | null } }[];
    };
    const rows = REPLICA_ROWS.map((id) => report.rows.find((r) => r.id === id)!);
    expect(rows.map((r) => r?.id)).toEqual(REPLICA_ROWS);
    if (!hasReplicaServices) {
      expect(rows.map((r) => r.skipped)).toEqual(Array(REPLICA_ROWS.length).fill('needs DATABASE_URL and REDIS_URL'));
      return;
    }
    for (const row of rows) {
      expect(row.skipped).toBeUndefined();
      expect(Object.keys(row.series)).toEqual(['app']);
      expect(row.series.app[0]).toBeGreaterThan(0);
    }
    const [one, two, ratio, bytes] = rows.map((r) => r.series.app[0]);
    expect(ratio).toBeCloseTo(two / one, 9);
    // Every blob reached the upstream at least once, and at most once per replica.
    expect(bytes).toBeGreaterThanOrEqual(1);
    expect(bytes).toBeLessThanOrEqual(2);
    expect(typeof report.rows.find((r) => r.id === 'replicas-wall')!.target!.met).toBe('boolean');
    expect(typeof report.rows.find((r) => r.id === 'replicas-upstream-bytes')!.target!.met).toBe('boolean');
  });

  it('stops every process it started (by the PIDs it logged) and removes its work directory', () => {
    const workDir = /work directory (\S+)/.exec(run.stderr)?.[1];
    expect(workDir).toBeDefined();
    expect(existsSync(workDir!)).toBe(false);
    const pids = [...run.stderr.matchAll(/started (.+?) \(pid (\d+)\)/g)].map((m) => ({ name: m[1], pid: Number(m[2]) }));
    expect(pids.map((p) => p.name)).toEqual(
      expect.arrayContaining([
        'app',
        'distribution proxy',
        ...(hasNginx ? ['nginx', 'nginx (x-accel front)'] : []),
        ...(hasReplicaServices ? ['app replica 1', 'app replica 2', 'app worker'] : []),
      ]),
    );
    expect(pids.filter((p) => existsSync(`/proc/${p.pid}`))).toEqual([]);
    expect(processesMentioning(workDir!)).toEqual([]);
  });
});
