import { ConfigType, registerAs } from '@nestjs/config';
import { Environment, parseEnvironment } from './environment.js';

/**
 * Typed configuration namespaces (inject with `@Inject(appConfig.KEY) cfg: AppConfig`).
 * All read the one validated Environment; validation runs once, in loadEnvironment().
 */
let current: Environment | undefined;

/** Parse + validate process.env (once). Throws ConfigValidationError. */
export function loadEnvironment(env: Record<string, string | undefined> = process.env, reload = false): Environment {
  if (!current || reload) current = parseEnvironment(env);
  return current;
}

/** Replace the environment (tests build apps with their own settings). */
export function useEnvironment(env: Environment): void {
  current = env;
}

const section =
  <K extends keyof Environment>(key: K) =>
  () =>
    loadEnvironment()[key];

export const appConfig = registerAs('app', section('app'));
export const databaseConfig = registerAs('database', section('database'));
export const queueConfig = registerAs('queue', section('queue'));
export const storageConfig = registerAs('storage', section('storage'));
export const securityConfig = registerAs('security', section('security'));
export const upstreamConfig = registerAs('upstream', section('upstream'));
export const limitsConfig = registerAs('limits', section('limits'));

export const allConfigNamespaces = [appConfig, databaseConfig, queueConfig, storageConfig, securityConfig, upstreamConfig, limitsConfig];

export type AppConfig = ConfigType<typeof appConfig>;
export type DatabaseConfig = ConfigType<typeof databaseConfig>;
export type QueueConfig = ConfigType<typeof queueConfig>;
export type StorageConfig = ConfigType<typeof storageConfig>;
export type SecurityConfig = ConfigType<typeof securityConfig>;
export type UpstreamConfig = ConfigType<typeof upstreamConfig>;
export type LimitsConfig = ConfigType<typeof limitsConfig>;
