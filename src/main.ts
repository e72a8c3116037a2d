/**
 * The API process: registry pull API, admin API, token endpoint, health and metrics.
 * With the in-process queue (no REDIS_URL) it also runs the background jobs.
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './app.factory.js';
import { loadEnvironment } from './config/config.js';
import { exitOnBootFailure, installShutdownTimeout } from './process-lifecycle.js';

async function bootstrap(): Promise<void> {
  const env = loadEnvironment();
  const app = await createApp();
  installShutdownTimeout(env.app.shutdownTimeoutMs);
  await app.listen(env.app.port, env.app.host);
  new Logger('Main').log(`listening on ${await app.getUrl()} (database: ${env.database.url ? 'postgres' : 'embedded'}, queue: ${env.queue.driver}, storage: ${env.storage.driver})`);
}

bootstrap().catch(exitOnBootFailure);
