/**
 * The API process: registry pull API, admin API, token endpoint, health and metrics.
 * With the in-process queue (no REDIS_URL) it also runs the background jobs.
 * With HTTP_WORKERS > 1 it is a node:cluster primary whose workers run this file too (http-workers.ts).
 */
import 'reflect-metadata';
import cluster from 'node:cluster';
import { parseEnvironment } from './config/environment.js';
import { runHttpWorkers } from './http-workers.js';
import { AppLogger, createRootLogger } from './observability/app-logger.js';
import { exitOnBootFailure, installGracefulShutdown, routeWarningsToLog, tuneGarbageCollector, tuneMemoryAllocator } from './process-lifecycle.js';

async function bootstrap(): Promise<void> {
  const env = parseEnvironment(process.env);
  const logger = new AppLogger(createRootLogger(env.app.logLevel));
  routeWarningsToLog(logger);
  if (env.app.httpWorkers > 1 && cluster.isPrimary) return runHttpWorkers(env, logger);
  tuneGarbageCollector();
  tuneMemoryAllocator();
  // Loaded here: a cluster primary (above) never builds the application.
  const [{ createApp }, { FillPeers }] = await Promise.all([import('./app.factory.js'), import('./proxy/fill-peers.js')]);
  const app = await createApp(env, logger);
  installGracefulShutdown(app, env.app.shutdownTimeoutMs, logger);
  await app.listen(env.app.port, env.app.host);
  if (cluster.isWorker) await app.get(FillPeers, { strict: false }).listenForPeers(env.app.host);
  logger.log(
    `listening on ${await app.getUrl()} (database: ${env.database.url ? 'postgres' : 'embedded'}, queue: ${env.queue.driver}, storage: ${env.storage.driver})`,
    'Main',
  );
}

bootstrap().catch(exitOnBootFailure);
