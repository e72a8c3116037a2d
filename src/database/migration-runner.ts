import { DataSource, Migration, MigrationExecutor } from 'typeorm';

/** Any constant; replicas booting together serialise on it so migrations run exactly once. */
const MIGRATION_LOCK_KEY = 7_274_182_931;

/**
 * Runs pending migrations while holding a Postgres advisory lock (several replicas may boot at once).
 * Idempotent: a second run finds nothing pending.
 */
export async function runMigrations(dataSource: DataSource): Promise<Migration[]> {
  const queryRunner = dataSource.createQueryRunner();
  await queryRunner.connect();
  try {
    await queryRunner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const executor = new MigrationExecutor(dataSource, queryRunner);
      executor.transaction = 'each';
      return await executor.executePendingMigrations();
    } finally {
      await queryRunner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await queryRunner.release();
  }
}

export async function revertLastMigration(dataSource: DataSource): Promise<void> {
  const queryRunner = dataSource.createQueryRunner();
  await queryRunner.connect();
  try {
    const executor = new MigrationExecutor(dataSource, queryRunner);
    executor.transaction = 'each';
    await executor.undoLastMigration();
  } finally {
    await queryRunner.release();
  }
}
