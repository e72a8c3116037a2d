/**
 * `npm run bench`: the app against a direct pull from its upstream and against two reference peers in
 * front of the same upstream (CNCF Distribution in proxy mode, nginx with proxy_cache + proxy_cache_lock),
 * all on loopback, as ratios measured in the same round (SPEC section 8).
 *
 * Each round pushes new deterministic images to the upstream and measures, every system in a rotated
 * order: cold and warm skopeo pulls, warm blob GET throughput, cached manifest GETs per second, and 8
 * concurrent cold pulls (wall time, and what reached the upstream from its access log); then the same 8
 * split across two app replicas against the same 8 through one (with Postgres and Redis). Once per run:
 * the app's peak RSS while 4 clients pull a 2 GiB blob cold and warm, and manifest latency with 1,000 vs
 * 1,000,000 cache rows. Output: a table on stdout, JSON (timestamped and latest.json) and latest.md in
 * bench/results/. Every process it started is stopped by PID, every temp directory removed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startUpstreamRegistry, type UpstreamRegistry } from '../test/support/upstream-registry.js';
import { RowBook, type BenchContext } from './bench-context.js';
import { FULL_SIZES, SMOKE_SIZES, pushBigImages, pushRoundImages, type BenchImage } from './bench-images.js';
import { skopeoPull } from './clients/skopeo-pull.js';
import { parseBenchOptions, UsageError, USAGE, type BenchOptions } from './bench-options.js';
import { loadTool } from './clients/http-load.js';
import type { BenchReport } from './report/bench-report.js';
import { renderMarkdown, renderText } from './report/report-table.js';
import { summarizeCpuProfiles } from './report/cpu-profile-summary.js';
import { applySpecTargets } from './report/spec-targets.js';
import { measureColdBlobGets } from './scenarios/cold-blob.scenario.js';
import { measureBlobThroughput } from './scenarios/blob-throughput.scenario.js';
import { measureCacheRowsLatency } from './scenarios/cache-rows.scenario.js';
import { measureConcurrentPulls } from './scenarios/concurrent-pulls.scenario.js';
import { measureManifestRate } from './scenarios/manifest-rate.scenario.js';
import { measureMemory } from './scenarios/memory.scenario.js';
import { measurePullTimes } from './scenarios/pull-times.scenario.js';
import { measureReplicaPulls, skipReplicaRows } from './scenarios/replica-pulls.scenario.js';
import { StartedProcesses } from './started-processes.js';
import { AppProcess } from './systems/app-process.js';
import { AppReplicas } from './systems/app-replicas.js';
import { AppSystem } from './systems/app.system.js';
import { DirectUpstreamSystem } from './systems/direct-upstream.system.js';
import { DistributionProxySystem } from './systems/distribution-proxy.system.js';
import { NginxCacheSystem } from './systems/nginx-cache.system.js';
import { OffloadAppSystem } from './systems/offload.system.js';
import { measureOffload } from './scenarios/offload.scenario.js';
import type { PullSystem, SystemId } from './systems/pull-system.js';

const APP_MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

/** Set when SIGINT/SIGTERM stops the run: the failures that follow are the interruption's, not errors. */
let interruptedBy: NodeJS.Signals | undefined;

function hasBinary(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function versionOf(command: string, args: string[], pattern: RegExp): string {
  // nginx -v and wrk -v print to stderr (wrk also exits 1).
  const { stdout, stderr } = spawnSync(command, args, { encoding: 'utf8' });
  const text = `${stdout ?? ''}${stderr ?? ''}`;
  return pattern.exec(text)?.[1] ?? 'unknown';
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

function commandLine(argv: readonly string[]): string {
  const env = ['DATABASE_URL', 'REDIS_URL'].filter((name) => process.env[name]).map((name) => `${name}=${redactUrl(process.env[name]!)}`);
  return [...env, 'npm run bench', ...(argv.length ? ['--', ...argv] : [])].join(' ');
}

function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function runBenchmark(options: BenchOptions, argv: readonly string[], profileDir: string | undefined): Promise<BenchReport> {
  for (const binary of ['docker-registry', 'skopeo']) {
    if (!hasBinary(binary)) throw new Error(`${binary} is not installed (Debian: apt-get install docker-registry skopeo)`);
  }
  if (!existsSync(APP_MAIN)) throw new Error(`${APP_MAIN} is missing: run npm run build first`);

  const startedAt = new Date();
  const loadAtStart = loadavg()[0];
  const processes = new StartedProcesses((p) => progress(`started ${p.name} (pid ${p.pid})`));
  const workDir = await mkdtemp(join(tmpdir(), 'cvr-bench-'));
  const systems: PullSystem[] = [];
  /** The offload systems (issue 13): measured by their own scenario, not by every scenario. */
  const offloadSystems: OffloadAppSystem[] = [];
  let upstream: UpstreamRegistry | undefined;
  let app: AppProcess | undefined;
  let replicas: AppReplicas | undefined;

  const clients = new AbortController();
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      clients.abort();
      for (const system of [...offloadSystems, ...systems].reverse()) await system.close().catch((err: unknown) => progress(`cleanup: ${String(err)}`));
      await replicas?.stop().catch((err: unknown) => progress(`cleanup: ${String(err)}`));
      await app?.stop().catch((err: unknown) => progress(`cleanup: ${String(err)}`));
      await upstream?.close().catch((err: unknown) => progress(`cleanup: ${String(err)}`));
      await processes.stopAll();
      rmSync(workDir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruptedBy) return;
    interruptedBy = signal;
    progress(`${signal}: stopping every process the benchmark started`);
    void cleanup().finally(() => process.exit(130));
  };
  const onExit = () => {
    processes.killAllNow();
    rmSync(workDir, { recursive: true, force: true });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  try {
    const skippedSystems: Partial<Record<SystemId, string>> = {};
    progress(`work directory ${workDir}`);
    upstream = await startUpstreamRegistry({ logLevel: 'error' });
    progress(`upstream docker-registry at ${upstream.url}`);

    const only = options.only;
    const storage = options.s3 ? 's3' : 'filesystem';
    const replicasUnavailable = AppReplicas.unavailable();
    // The replicas' deployment boots next to the app (before anything is measured).
    const [appStarted, replicasStarted] = await Promise.allSettled([
      AppProcess.start({ storage, workDir, processes, cpuProfileDir: profileDir, httpWorkers: options.httpWorkers }),
      only.has('replicas') && !replicasUnavailable ? AppReplicas.start({ storage, workDir, processes, upstreamUrl: upstream.url }) : undefined,
    ]);
    // Both assigned before any failure is thrown: cleanup stops whatever did start.
    if (appStarted.status === 'fulfilled') app = appStarted.value;
    if (replicasStarted.status === 'fulfilled') replicas = replicasStarted.value;
    for (const started of [appStarted, replicasStarted]) if (started.status === 'rejected') throw started.reason;
    if (!app) throw new Error('the app did not start');
    progress(`app (pid ${app.pid}) at ${app.url}: ${app.configuration}`);
    if (replicas) progress(`app replicas: ${replicas.configuration}`);
    const appSystem = new AppSystem(app, upstream.url);

    systems.push(new DirectUpstreamSystem(upstream), appSystem);
    systems.push(new DistributionProxySystem(upstream.url, workDir, processes));
    if (hasBinary('nginx')) systems.push(new NginxCacheSystem(upstream.url, workDir, processes));
    else skippedSystems.nginx = 'nginx is not installed (Debian: apt-get install nginx-light)';
    if (only.has('offload')) {
      const offloadOptions = { upstreamUrl: upstream.url, workDir, processes };
      if (hasBinary('nginx')) offloadSystems.push(await OffloadAppSystem.startXAccel(offloadOptions));
      else skippedSystems['app-x-accel'] = 'nginx is not installed (Debian: apt-get install nginx-light)';
      offloadSystems.push(await OffloadAppSystem.startPresigned(offloadOptions));
    }

    const rows = new RowBook();
    const ctx: BenchContext = { upstream, systems, app: appSystem, workDir, smoke: options.smoke, rows, progress, signal: clients.signal };
    const sizes = options.smoke ? SMOKE_SIZES : FULL_SIZES;

    const perRound = (['pulls', 'blob', 'manifests', 'concurrent', 'replicas', 'offload'] as const).filter((s) => only.has(s));
    if (perRound.length) {
      // The app is a long-running JIT-compiled process: its first pull compiles the pull path and opens its
      // pools, which no later pull pays. One unmeasured cold and warm pull of an image of the big image's
      // size, through every system, so round 1 measures what every later pull costs (the peers start
      // afresh for each cold round anyway).
      progress('warm-up: one unmeasured cold and warm pull of another image through every system');
      const [warmUpImage] = await pushBigImages(upstream, 0, sizes, 'warm-up', 1);
      await warmUp(ctx, warmUpImage);
      for (const system of ctx.systems) await skopeoPull(system, warmUpImage.name, warmUpImage.tag, ctx.workDir, { signal: ctx.signal });
    }
    for (let round = 0; perRound.length && round < options.rounds; round++) {
      progress(`round ${round + 1}/${options.rounds}: pushing this round's images`);
      const images = await pushRoundImages(upstream, round, sizes);
      // Blob and manifest rows read what the cold and warm pulls cached; without them, one pull caches it.
      if (only.has('pulls')) await measurePullTimes(ctx, images, round);
      else if (only.has('blob') || only.has('manifests')) await warmUp(ctx, images.big);
      if (only.has('blob')) await measureBlobThroughput(ctx, images.big, round);
      if (only.has('manifests')) await measureManifestRate(ctx, images.big, round);
      // After the rows that read the round's cached images: it empties every system's cache.
      if (only.has('blob')) await measureColdBlobGets(ctx, (await pushBigImages(upstream, round, sizes, 'cold-blob', 1))[0], round);
      if (only.has('concurrent')) await measureConcurrentPulls(ctx, images.concurrent, round);
      if (only.has('replicas') && replicas) await measureReplicaPulls(ctx, replicas, await pushBigImages(upstream, round, sizes, 'replicas', 2), round);
      else if (only.has('replicas')) skipReplicaRows(ctx, images.concurrent, replicasUnavailable!);
      if (only.has('offload')) await measureOffload(ctx, offloadSystems, images.big, round);
    }
    if (only.has('memory')) await measureMemory(ctx);
    if (only.has('rows')) await measureCacheRowsLatency(ctx);
    applySpecTargets(rows);

    const notes = [
      "Pull rows: wall time of `skopeo copy docker://... dir:` (skopeo verifies every digest); cold = the system's cache just emptied and images nobody pulled before.",
      "Before round 1 every system serves one unmeasured cold and warm pull of a warm-up image of the big image's size (the app compiles its pull path on its first pull).",
      'The upstream and the peers have no auth; the app checks a registry JWT on every request (skopeo does the token flow with a personal access token).',
      'SPEC pull bars are stated for the 200 MiB image; the small-image and index rows are for information.',
    ];
    if (profileDir) notes.push(`app CPU profile: ${profileDir}`);
    const report: BenchReport = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      command: commandLine(argv),
      mode: options.smoke ? 'smoke' : 'full',
      scenarios: [...options.only],
      rounds: options.rounds,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
        memoryGiB: Math.round(totalmem() / 1024 ** 3),
        kernel: release(),
        node: process.versions.node,
        loadAverage: { atStart: loadAtStart, atEnd: loadavg()[0] },
      },
      versions: {
        'docker-registry': versionOf('docker-registry', ['--version'], /distribution (\S+)/),
        skopeo: versionOf('skopeo', ['--version'], /skopeo version (\S+)/),
        ...(hasBinary('nginx') ? { nginx: versionOf('nginx', ['-v'], /nginx\/(\S+)/) } : {}),
        ...(loadTool() === 'wrk' ? { wrk: versionOf('wrk', ['-v'], /wrk (\S+)/) } : {}),
      },
      appConfiguration: app.configuration,
      loadTool: loadTool() === 'wrk' ? 'wrk (1 thread)' : 'in-process undici loop (wrk is not installed)',
      skippedSystems,
      rows: rows.all(),
      notes,
    };
    return report;
  } finally {
    await cleanup();
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Fresh caches everywhere, then one pull of `image` through each system, settled. */
async function warmUp(ctx: BenchContext, image: BenchImage): Promise<void> {
  for (const system of ctx.systems) {
    await system.freshCache();
    await skopeoPull(system, image.name, image.tag, ctx.workDir, { all: image.all, signal: ctx.signal });
    await system.settle(image.digests, 120_000);
  }
}

async function saveReport(report: BenchReport, options: BenchOptions): Promise<string[]> {
  await mkdir(options.resultsDir, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const written: string[] = [];
  const write = async (name: string, content: string) => {
    const path = join(options.resultsDir, name);
    await writeFile(path, content);
    written.push(path);
  };
  if (report.mode === 'smoke') {
    // Smoke runs (CI) never replace the full run's results.
    await write('smoke-latest.json', json);
  } else {
    await write(`${report.startedAt.replace(/[:.]/g, '-')}.json`, json);
    await write('latest.json', json);
    await write('latest.md', `Command: \`${report.command}\`\n\n${renderMarkdown(report)}`);
  }
  return written;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let options: BenchOptions;
  try {
    const parsed = parseBenchOptions(argv);
    if (parsed === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  const profileDir = options.profile ? join(options.resultsDir, `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
  const report = await runBenchmark(options, argv, profileDir);
  process.stdout.write(`\n${renderText(report)}`);
  const written = await saveReport(report, options);
  // The app wrote its profile when it exited (the benchmark has stopped it by now).
  if (profileDir) written.push(...(await summarizeCpuProfiles(profileDir)));
  for (const path of written) process.stdout.write(`wrote ${path}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (interruptedBy) return; // the signal handler exits once everything is stopped
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
