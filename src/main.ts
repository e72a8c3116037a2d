/**
 * The API process: registry pull API, admin API, token endpoint, health and metrics.
 * With the in-process queue (no REDIS_URL) it also runs the background jobs.
 */
import 'reflect-metadata';
import { createApp } from './app.factory.js';
import { parseEnvironment } from './config/environment.js';
import { AppLogger, createRootLogger } from './observability/app-logger.js';
import { exitOnBootFailure, installGracefulShutdown, routeWarningsToLog, tuneGarbageCollector, tuneMemoryAllocator } from './process-lifecycle.js';

async function bootstrap(): Promise<void> {
  tuneGarbageCollector();
  tuneMemoryAllocator();
  const env = parseEnvironment(process.env);
  const logger = new AppLogger(createRootLogger(env.app.logLevel));
  routeWarningsToLog(logger);
  const app = await createApp(env, logger);
  installGracefulShutdown(app, env.app.shutdownTimeoutMs, logger);
  await app.listen(env.app.port, env.app.host);
  logger.log(
    `listening on ${await app.getUrl()} (database: ${env.database.url ? 'postgres' : 'embedded'}, queue: ${env.queue.driver}, storage: ${env.storage.driver})`,
    'Main',
  );
}

bootstrap().catch(exitOnBootFailure);
