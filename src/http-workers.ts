import cluster, { type Worker } from 'node:cluster';
import type { LoggerService } from '@nestjs/common';
import type { Environment } from './config/environment.js';
import { answerClusterMetrics } from './observability/cluster-metrics.js';

/** A worker that keeps dying as soon as it is replaced is not replaced forever: this many in a minute stop the process. */
const MAX_REPLACEMENTS_PER_MINUTE = 5;

/**
 * HTTP_WORKERS > 1: the API process becomes a node:cluster primary that serves nothing itself. Each worker
 * is a whole API process (main.ts) listening on the shared port, which Node hands connections to in turn;
 * everything else the workers share through Postgres and Redis, as replicas do, and a fill is followed
 * across workers as across replicas (each worker announces a listener of its own, FillPeers).
 *
 * The primary:
 * - starts one worker, and the others once it listens: migrations and the admin bootstrap run once, and a
 *   boot failure (a bad database URL) is one error and exit 1, not N;
 * - replaces a worker that dies after it listened (at most 5 a minute, then it stops with exit 1);
 * - passes SIGTERM and SIGINT on to the workers, each draining as a lone process does, and exits once they
 *   all have (1 if one did not exit cleanly, or if they outlive SHUTDOWN_TIMEOUT_MS by 5 s);
 * - answers the workers' requests for everyone's metrics, so `/metrics` is the whole process's.
 */
export function runHttpWorkers(env: Environment, logger: LoggerService): void {
  const count = env.app.httpWorkers;
  const listened = new WeakSet<Worker>();
  const replacements: number[] = [];
  let stopping = false;
  let exitCode = 0;

  answerClusterMetrics();
  const start = (): Worker => {
    const worker = cluster.fork();
    worker.once('listening', () => listened.add(worker));
    return worker;
  };
  const alive = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  const stop = (signal: NodeJS.Signals, code: number) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    const workers = alive();
    if (workers.length === 0) process.exit(exitCode);
    for (const worker of workers) worker.process.kill(signal);
    setTimeout(() => {
      logger.error(`HTTP workers still running ${env.app.shutdownTimeoutMs + 5000} ms after ${signal}: killing them`, undefined, 'HttpWorkers');
      for (const worker of alive()) worker.process.kill('SIGKILL');
      process.exit(1);
    }, env.app.shutdownTimeoutMs + 5000).unref();
  };

  cluster.on('exit', (worker, code, signal) => {
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (stopping) {
      if (code !== 0) exitCode = 1;
      if (alive().length === 0) process.exit(exitCode);
      return;
    }
    if (!listened.has(worker)) {
      logger.error(`HTTP worker ${worker.process.pid} ended before it listened (${how}): stopping`, undefined, 'HttpWorkers');
      stop('SIGTERM', 1);
      return;
    }
    const now = Date.now();
    replacements.push(now);
    while (replacements[0] < now - 60_000) replacements.shift();
    if (replacements.length > MAX_REPLACEMENTS_PER_MINUTE) {
      logger.error(`HTTP worker ${worker.process.pid} ended (${how}), the ${replacements.length}th in a minute: stopping`, undefined, 'HttpWorkers');
      stop('SIGTERM', 1);
      return;
    }
    logger.error(`HTTP worker ${worker.process.pid} ended (${how}): starting another`, undefined, 'HttpWorkers');
    start();
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      logger.log(`${signal}: stopping ${alive().length} HTTP workers`, 'HttpWorkers');
      stop(signal, 0);
    });
  }

  start().once('listening', () => {
    for (let i = 1; i < count; i++) start();
    logger.log(`${count} HTTP workers share port ${env.app.port} (primary pid ${process.pid})`, 'HttpWorkers');
  });
}
