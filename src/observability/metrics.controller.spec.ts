import { describe, expect, it } from '@jest/globals';
import { HttpStatus, type HttpException } from '@nestjs/common';
import type { QueueDriver } from '../jobs/queue-driver.js';
import { MetricsController } from './metrics.controller.js';
import type { MetricsService } from './metrics.service.js';

const queue = { counts: () => Promise.resolve({ waiting: 2 }) } as unknown as QueueDriver;
const metricsWith = (exposition: () => Promise<string>) => ({ exposition, queueJobs: { set: () => undefined } }) as unknown as MetricsService;

describe('MetricsController', () => {
  it('answers with the exposition', async () => {
    const controller = new MetricsController(
      metricsWith(() => Promise.resolve('registry_up 1\n')),
      queue,
    );
    await expect(controller.scrape()).resolves.toBe('registry_up 1\n');
  });

  it("answers 503, not 500, when the cluster primary does not hand over every worker's metrics", async () => {
    const controller = new MetricsController(
      metricsWith(() => Promise.reject(new Error('the cluster primary did not answer within 7000 ms'))),
      queue,
    );
    const err = await controller.scrape().catch((e: unknown) => e as HttpException);
    expect((err as HttpException).getStatus()).toBe(HttpStatus.SERVICE_UNAVAILABLE);
    expect(JSON.stringify((err as HttpException).getResponse())).toContain('could not be collected');
  });
});
