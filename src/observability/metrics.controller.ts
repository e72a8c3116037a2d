import { Controller, Get, Header, Inject, Logger, ServiceUnavailableException } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { QUEUE_DRIVER, type QueueDriver } from '../jobs/queue-driver.js';
import { MetricsService } from './metrics.service.js';

@ApiExcludeController()
@Controller('metrics')
export class MetricsController {
  private readonly logger = new Logger(MetricsController.name);

  constructor(
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
  ) {}

  @Get()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  async scrape(): Promise<string> {
    try {
      const counts = await this.queue.counts();
      for (const [state, n] of Object.entries(counts) as [string, number][]) this.metrics.queueJobs.set({ state }, n);
    } catch {
      // queue unreachable: the gauge keeps its last value; readiness reports the outage
    }
    try {
      return await this.metrics.exposition();
    } catch (err) {
      // With HTTP workers the cluster primary merges the workers' metrics; without its answer this scrape
      // has no whole-process numbers to give: 503 (the scrape fails), never one worker's partial counts.
      this.logger.warn(`metrics scrape failed: ${(err as Error).message}`);
      throw new ServiceUnavailableException('the metrics of every HTTP worker could not be collected; try again');
    }
  }
}
