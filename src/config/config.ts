import type { Environment } from './environment.js';

/**
 * Typed configuration namespaces, one per section of the validated Environment. Inject a section with
 * `@Inject(appConfig.KEY) cfg: AppConfig`; ConfigModule.forRoot(env) provides every section.
 */
interface ConfigNamespace<S extends keyof Environment> {
  /** The injection token of the section. */
  readonly KEY: string;
  readonly section: S;
}

const namespace = <S extends keyof Environment>(section: S): ConfigNamespace<S> => ({ KEY: `CONFIGURATION(${section})`, section });

export const appConfig = namespace('app');
export const databaseConfig = namespace('database');
export const queueConfig = namespace('queue');
export const storageConfig = namespace('storage');
export const securityConfig = namespace('security');
export const upstreamConfig = namespace('upstream');
export const limitsConfig = namespace('limits');

export const allConfigNamespaces = [appConfig, databaseConfig, queueConfig, storageConfig, securityConfig, upstreamConfig, limitsConfig];

export type AppConfig = Environment['app'];
export type DatabaseConfig = Environment['database'];
export type QueueConfig = Environment['queue'];
export type StorageConfig = Environment['storage'];
export type SecurityConfig = Environment['security'];
export type UpstreamConfig = Environment['upstream'];
export type LimitsConfig = Environment['limits'];
