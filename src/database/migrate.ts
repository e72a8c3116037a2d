/**
 * `npm run migration:run` / `npm run migration:revert`: the same migrations the app runs at boot,
 * against DATABASE_URL or the embedded database under DATA_DIR. Idempotent.
 */
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { ConfigValidationError, parseEnvironment } from '../config/environment.js';
import { dataSourceOptions } from './data-source-options.js';
import { EmbeddedPostgres } from './embedded-postgres.js';
import { revertLastMigration, runMigrations } from './migration-runner.js';

async function main(command: string): Promise<void> {
  const env = parseEnvironment(process.env);
  const embedded = env.database.url ? undefined : new EmbeddedPostgres(env.app.dataDir, 2);
  const url = env.database.url ?? (await embedded!.start());
  const dataSource = new DataSource(dataSourceOptions(url));
  await dataSource.initialize();
  try {
    if (command === 'revert') {
      await revertLastMigration(dataSource);
      process.stdout.write('reverted the last migration\n');
    } else {
      const ran = await runMigrations(dataSource);
      process.stdout.write(ran.length ? `applied: ${ran.map((m) => m.name).join(', ')}\n` : 'no pending migrations\n');
    }
  } finally {
    await dataSource.destroy();
    await embedded?.stop();
  }
}

main(process.argv[2] ?? 'run').catch((err: unknown) => {
  const message = err instanceof ConfigValidationError ? err.message : `migration failed: ${(err as Error).message}`;
  process.stderr.write(`${message}\n`);
  process.exit(1);
});
