/**
 * The worker process: the same modules as the API, no HTTP; it runs background jobs only
 * (fill cache entries, prefetch images, purge, destroy, orphan cleanup, cleanup policies).
 * Start as many as you like next to the API replicas (they share Postgres, Redis and storage).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { parseEnvironment } from './config/environment.js';
import { AppLogger, createRootLogger } from './observability/app-logger.js';
import { exitOnBootFailure, installGracefulShutdown, routeWarningsToLog, tuneGarbageCollector, tuneMemoryAllocator } from './process-lifecycle.js';

async function bootstrap(): Promise<void> {
  tuneGarbageCollector();
  tuneMemoryAllocator();
  const env = parseEnvironment({ ...process.env, APP_ROLE: 'worker' });
  if (env.queue.driver !== 'bullmq') {
    throw new Error('the worker needs REDIS_URL (with the in-process queue the API process runs the jobs itself)');
  }
  const logger = new AppLogger(createRootLogger(env.app.logLevel));
  routeWarningsToLog(logger);
  const app = await NestFactory.createApplicationContext(AppModule.forRoot(env), { logger, abortOnError: false });
  installGracefulShutdown(app, env.app.shutdownTimeoutMs, logger);
  logger.log('worker started: processing background jobs', 'Worker');
}

bootstrap().catch(exitOnBootFailure);
