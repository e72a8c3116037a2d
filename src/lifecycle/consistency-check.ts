/**
 * `npm run cache:check [-- --fix] [--json] [--grace-period-ms N]`: compares the blob store with the
 * cache_entries table (DATABASE_URL, or the embedded database under DATA_DIR: stop the app first, since
 * the embedded database takes one process) and reports live entries whose object is missing, objects no
 * entry references and temporary objects left by writes that never finished (the last two only past the
 * grace period, ORPHAN_GRACE_PERIOD_MS). Exits 0 when consistent, 1 otherwise (2 on a usage or boot error).
 * `--fix` runs the orphan cleanup (and destroys the entries it marks), then checks again.
 */
import 'reflect-metadata';
import { Module, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { ConfigModule } from '../config/config.module.js';
import { ConfigValidationError, parseEnvironment, type Environment, type LogLevel } from '../config/environment.js';
import { DatabaseModule } from '../database/database.module.js';
import { AppLogger, createRootLogger } from '../observability/app-logger.js';
import { MetricsService } from '../observability/metrics.service.js';
import { StorageModule } from '../storage/storage.module.js';
import { CacheDestructionService } from './cache-destruction.service.js';
import { CLOCK, SystemClock } from './clock.js';
import { OrphanCleanupService } from './orphan-cleanup.service.js';
import { describeConsistencyReport, isConsistent, type StorageConsistencyReport } from './storage-consistency.js';

/** Only what the check needs: configuration, database, blob store, and the two lifecycle services. */
@Module({
  imports: [DatabaseModule, StorageModule, TypeOrmModule.forFeature([CacheEntry])],
  providers: [{ provide: CLOCK, useClass: SystemClock }, MetricsService, OrphanCleanupService, CacheDestructionService],
})
class ConsistencyCheckModule {
  static forRoot(env: Environment): DynamicModule {
    return { module: ConsistencyCheckModule, imports: [ConfigModule.forRoot(env)] };
  }
}

export interface ConsistencyCheckOptions {
  fix: boolean;
  json: boolean;
  gracePeriodMs?: number;
}

export class UsageError extends Error {}

export function parseArguments(argv: readonly string[]): ConsistencyCheckOptions {
  const options: ConsistencyCheckOptions = { fix: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--fix') options.fix = true;
    else if (arg === '--json') options.json = true;
    else if (arg === '--grace-period-ms' || arg.startsWith('--grace-period-ms=')) {
      const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      if (value === undefined || !/^\d+$/.test(value)) throw new UsageError(`--grace-period-ms needs a whole number of milliseconds, got "${value ?? ''}"`);
      options.gracePeriodMs = Number(value);
    } else {
      throw new UsageError(`unknown argument "${arg}" (usage: cache:check [--fix] [--json] [--grace-period-ms N])`);
    }
  }
  return options;
}

export interface ConsistencyCheckResult {
  /** The state found (before any repair), with what --fix repaired. */
  found: StorageConsistencyReport;
  /** With --fix: the state after the repair. */
  after?: StorageConsistencyReport;
  consistent: boolean;
}

/** Runs the check (and the repair) with the services of an application context. */
export async function checkConsistency(app: INestApplicationContext, options: ConsistencyCheckOptions): Promise<ConsistencyCheckResult> {
  const orphans = app.get(OrphanCleanupService);
  const scan = { gracePeriodMs: options.gracePeriodMs };
  if (!options.fix) {
    const found = await orphans.inspect(scan);
    return { found, consistent: isConsistent(found) };
  }
  const found = await orphans.clean(scan);
  await app.get(CacheDestructionService).destroyPending();
  const after = await orphans.inspect(scan);
  return { found, after, consistent: isConsistent(after) };
}

export function describeResult(result: ConsistencyCheckResult, json: boolean): string {
  if (json) return `${JSON.stringify(result, null, 2)}\n`;
  if (!result.after) return describeConsistencyReport(result.found);
  return `before the repair:\n${describeConsistencyReport(result.found)}\nafter the repair:\n${describeConsistencyReport(result.after)}`;
}

async function main(argv: readonly string[]): Promise<number> {
  const options = parseArguments(argv);
  const env = parseEnvironment(process.env);
  const quiet: LogLevel = ['debug', 'trace'].includes(env.app.logLevel) ? env.app.logLevel : 'warn';
  // Logs go to stderr, so stdout carries only the report.
  const logger = new AppLogger(createRootLogger(quiet, pino.destination({ dest: 2, sync: true })));
  const app = await NestFactory.createApplicationContext(ConsistencyCheckModule.forRoot(env), { logger, abortOnError: false });
  try {
    const result = await checkConsistency(app, options);
    process.stdout.write(describeResult(result, options.json));
    return result.consistent ? 0 : 1;
  } finally {
    await app.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      const message = err instanceof ConfigValidationError || err instanceof UsageError ? err.message : `consistency check failed: ${(err as Error).message}`;
      process.stderr.write(`${message}\n`);
      process.exit(2);
    },
  );
}
