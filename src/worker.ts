/**
 * The worker process: the same modules as the API, no HTTP; it runs background jobs only
 * (fill cache entries, revalidate, purge, destroy, orphan cleanup, cleanup policies).
 * Start as many as you like next to the API replicas (they share Postgres, Redis and storage).
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { loadEnvironment } from './config/config.js';
import { AppLogger, createRootLogger } from './observability/app-logger.js';
import { exitOnBootFailure, installShutdownTimeout } from './process-lifecycle.js';

async function bootstrap(): Promise<void> {
  process.env.APP_ROLE = 'worker';
  const env = loadEnvironment();
  if (env.queue.driver !== 'bullmq') {
    throw new Error('the worker needs REDIS_URL (with the in-process queue the API process runs the jobs itself)');
  }
  const app = await NestFactory.createApplicationContext(AppModule, {
    logger: new AppLogger(createRootLogger(env.app.logLevel)),
    abortOnError: false,
  });
  app.enableShutdownHooks();
  installShutdownTimeout(env.app.shutdownTimeoutMs);
  new Logger('Worker').log('worker started: processing background jobs');
}

bootstrap().catch(exitOnBootFailure);
