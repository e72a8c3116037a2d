import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { allConfigNamespaces } from './config/config.js';
import { DatabaseModule } from './database/database.module.js';
import { JobsModule } from './jobs/jobs.module.js';
import { ObservabilityModule } from './observability/observability.module.js';
import { StorageModule } from './storage/storage.module.js';

/** The modular monolith: one module per domain concept (see CONVENTIONS.md). */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: allConfigNamespaces }),
    DatabaseModule,
    StorageModule,
    JobsModule,
    ObservabilityModule,
  ],
})
export class AppModule {}
