import { Module } from '@nestjs/common';
import { JobsModule } from '../jobs/jobs.module.js';
import { StorageModule } from '../storage/storage.module.js';
import { HealthController } from './health.controller.js';
import { MetricsController } from './metrics.controller.js';
import { MetricsService } from './metrics.service.js';
import { ReadinessService } from './readiness.service.js';

/**
 * Health (liveness, readiness: database, queue, blob store) and Prometheus metrics. Modules that count
 * something import it for MetricsService.
 */
@Module({
  imports: [JobsModule, StorageModule],
  controllers: [HealthController, MetricsController],
  providers: [MetricsService, ReadinessService],
  exports: [MetricsService],
})
export class ObservabilityModule {}
