import { Inject, Injectable, Logger, Module, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { type AppConfig, appConfig, type DatabaseConfig, databaseConfig } from '../config/config.js';
import { dataSourceOptions } from './data-source-options.js';
import { EmbeddedPostgres } from './embedded-postgres.js';
import { runMigrations } from './migration-runner.js';

export const EMBEDDED_POSTGRES = 'EMBEDDED_POSTGRES';
const EMBEDDED_POOL_SIZE = 1;

@Module({
  providers: [
    {
      provide: EMBEDDED_POSTGRES,
      inject: [appConfig.KEY, databaseConfig.KEY],
      useFactory: (app: AppConfig, db: DatabaseConfig) => (db.url ? null : new EmbeddedPostgres(app.dataDir, db.poolSize)),
    },
  ],
  exports: [EMBEDDED_POSTGRES],
})
class EmbeddedPostgresModule {}

/** Runs pending migrations at boot (DATABASE_MIGRATIONS_RUN=true, the default), under an advisory lock. */
@Injectable()
class MigrationsOnBoot implements OnModuleInit {
  private readonly logger = new Logger('Migrations');

  constructor(
    private readonly dataSource: DataSource,
    @Inject(databaseConfig.KEY) private readonly config: DatabaseConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    if (!this.config.migrationsRun) return;
    const ran = await runMigrations(this.dataSource);
    if (ran.length) this.logger.log(`applied ${ran.length} migration(s): ${ran.map((m) => m.name).join(', ')}`);
  }
}

/**
 * TypeORM on Postgres: DATABASE_URL when set, otherwise the embedded PGlite under DATA_DIR.
 * Schema changes go through migrations only (never synchronize).
 */
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      imports: [EmbeddedPostgresModule],
      inject: [databaseConfig.KEY, EMBEDDED_POSTGRES],
      useFactory: async (db: DatabaseConfig, embedded: EmbeddedPostgres | null) => ({
        // PGlite runs one statement at a time, and its socket server interleaves the extended-protocol
        // messages of concurrent connections (unnamed portals get lost): the embedded database gets
        // exactly one connection. Real Postgres gets DATABASE_POOL_SIZE.
        ...dataSourceOptions(db.url ?? (await embedded!.start()), { size: db.url ? db.poolSize : EMBEDDED_POOL_SIZE, idleTimeoutMs: db.poolIdleTimeoutMs }),
        autoLoadEntities: true,
        // Fail boot quickly with a clear message instead of retrying for half a minute.
        retryAttempts: 2,
        retryDelay: 1000,
      }),
    }),
    EmbeddedPostgresModule,
  ],
  providers: [MigrationsOnBoot],
})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(EMBEDDED_POSTGRES) private readonly embedded: EmbeddedPostgres | null,
  ) {}

  /**
   * The pool's connections while it closes (a shutdown that takes long names them, see src/shutdown-progress.ts):
   * one still in use is a query or a transaction not finished.
   */
  describeShutdown(): string | undefined {
    const pool = (this.dataSource.driver as { master?: { totalCount: number; idleCount: number; waitingCount: number } }).master;
    if (!pool) return undefined;
    return `${pool.totalCount - pool.idleCount} of ${pool.totalCount} database connection(s) in use, ${pool.waitingCount} request(s) waiting for one`;
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.stop();
  }
}
