import { Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { MetricsService } from '../observability/metrics.service.js';
import { UpstreamHealth } from './client/upstream-health.js';

const BREAKER_STATE = { closed: 0, open: 1, 'half-open': 2 } as const;

/** Feeds UpstreamHealth's events (breakers, rate-limit budgets, remembered 404s) into /metrics. */
@Injectable()
export class UpstreamHealthMetrics implements OnModuleInit, OnModuleDestroy {
  private removeListener?: () => void;

  constructor(
    private readonly health: UpstreamHealth,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    // throwaway identities of the admin `test` endpoints are not upstreams
    const known = (upstream: string) => /^\d+$/.test(upstream);
    this.removeListener = this.health.addListener({
      onBreaker: (upstream, breaker, transition) => {
        if (!known(upstream)) return;
        this.metrics.upstreamBreakerState.set({ upstream }, BREAKER_STATE[breaker.state]);
        if (transition === 'opened') this.metrics.upstreamBreakerOpenings.inc({ upstream });
      },
      onRateLimit: (upstream, budget) => {
        if (!known(upstream)) return;
        if (budget.remaining !== undefined) this.metrics.upstreamRateLimitRemaining.set({ upstream }, budget.remaining);
        if (budget.limit !== undefined) this.metrics.upstreamRateLimitLimit.set({ upstream }, budget.limit);
        this.metrics.upstreamRateLimitPaused.set({ upstream }, budget.pausedUntil ? Math.ceil(budget.pausedUntil.getTime() / 1000) : 0);
      },
      onSpared: (upstream) => this.metrics.upstreamRateLimitSpared.inc({ upstream }),
      onNegativeHit: (upstream) => this.metrics.upstreamNegativeHits.inc({ upstream }),
    });
  }

  onModuleDestroy(): void {
    this.removeListener?.();
  }
}
