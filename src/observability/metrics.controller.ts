import { Controller, Get, Header, Inject } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { QUEUE_DRIVER, type QueueDriver } from '../jobs/queue-driver.js';
import { MetricsService } from './metrics.service.js';

@ApiExcludeController()
@Controller('metrics')
export class MetricsController {
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
    return this.metrics.exposition();
  }
}
