/**
 * TypeORM DataSource for the TypeORM CLI (e.g. `npx typeorm migration:show -d dist/ormconfig.js`).
 * Needs DATABASE_URL; for the embedded database use `npm run migration:run`.
 */
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { parseEnvironment } from './src/config/environment.js';
import { dataSourceOptions } from './src/database/data-source-options.js';

const env = parseEnvironment(process.env);
if (!env.database.url) throw new Error('ormconfig.ts needs DATABASE_URL (use `npm run migration:run` for the embedded database)');

export default new DataSource(
  dataSourceOptions(env.database.url, { size: env.database.poolSize, idleTimeoutMs: env.database.poolIdleTimeoutMs }, ['dist/src/**/*.entity.js']),
);
