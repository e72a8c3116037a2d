import { Module, type DynamicModule } from '@nestjs/common';
import { allConfigNamespaces } from './config.js';
import type { Environment } from './environment.js';

/**
 * The validated configuration, one provider per namespace (`appConfig.KEY`, ...). A process entry point
 * parses process.env once (parseEnvironment) and hands the result to AppModule.forRoot(env), which imports
 * this; tests hand their own. The one global module: every module reads configuration, and a process has
 * exactly one.
 */
@Module({})
export class ConfigModule {
  static forRoot(env: Environment): DynamicModule {
    const providers = allConfigNamespaces.map(({ KEY, section }) => ({ provide: KEY, useValue: env[section] }));
    return { module: ConfigModule, global: true, providers, exports: providers.map(({ provide }) => provide) };
  }
}
