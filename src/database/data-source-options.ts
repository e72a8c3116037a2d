import { DataSourceOptions } from 'typeorm';
import { migrations } from './migrations/index.js';
import { SnakeNamingStrategy } from './snake-naming.strategy.js';

/** The one place TypeORM options are built: the Nest module, the migration command and ormconfig.ts use it. */
export function dataSourceOptions(url: string, poolSize: number, entities: DataSourceOptions['entities'] = []): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities,
    migrations,
    migrationsTableName: 'migrations',
    migrationsTransactionMode: 'each',
    synchronize: false,
    migrationsRun: false, // run under an advisory lock by runMigrations(), see migration-runner.ts
    namingStrategy: new SnakeNamingStrategy(),
    extra: { max: poolSize, connectionTimeoutMillis: 10000 },
    // Failed queries surface as exceptions where they are handled (a unique violation is often expected).
    logging: false,
  };
}
