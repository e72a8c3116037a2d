import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type CounterConfiguration, type LabelValues } from 'prom-client';
import type { LookupCounts } from '../invalidation/invalidated-lru.js';
import { clusterMetrics, isClusterWorker, offerToCluster } from './cluster-metrics.js';
import { CounterTallies, type Tally } from './counter-tallies.js';

/** How often the event loop's delay is sampled (nodejs_eventloop_lag_* metrics), ms. */
const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * Every Prometheus metric of the service, in one registry (one per app instance, so tests can
 * run several apps in one process). Names follow Prometheus conventions.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  /** The tallies of the counters hot paths count with (see tally()). */
  private readonly talliesOf = new Map<Counter<string>, CounterTallies<string>>();

  readonly httpRequests = this.talliedCounter({
    name: 'http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration until the response is finished',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly cacheRequests = this.talliedCounter({
    name: 'registry_cache_requests_total',
    help: 'Pull requests by cache result (hit, miss, stale, revalidated) and kind (manifest, blob)',
    labelNames: ['result', 'kind'] as const,
    registers: [this.registry],
  });
  readonly memoryCacheRequests = this.talliedCounter({
    name: 'registry_memory_cache_requests_total',
    help: 'Lookups in the per-replica memory caches (MEMORY_CACHE_TTL_MS) by cache (authorization, registry, credential, manifest, blob) and result (hit, miss)',
    labelNames: ['cache', 'result'] as const,
    registers: [this.registry],
  });
  readonly bytesServed = this.talliedCounter({
    name: 'registry_bytes_served_total',
    help: 'Body bytes sent to clients by source (cache, upstream; x-accel and presigned: cache hits whose bytes nginx or the object store sent)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: 'registry_upstream_request_duration_seconds',
    help: 'Upstream request latency until headers',
    labelNames: ['method', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'registry_upstream_errors_total',
    help: 'Upstream failures by kind (unreachable, timeout, status, refused-address, protocol, credentials)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly upstreamRateLimitRemaining = new Gauge({
    name: 'registry_upstream_ratelimit_remaining',
    help: "An upstream's last known ratelimit-remaining (Docker Hub manifest GETs left in its window), per replica",
    labelNames: ['upstream'] as const,
    // HTTP workers of one process (HTTP_WORKERS) report the lowest any of them saw.
    aggregator: 'min',
    registers: [this.registry],
  });
  readonly upstreamRateLimitLimit = new Gauge({
    name: 'registry_upstream_ratelimit_limit',
    help: "An upstream's last known ratelimit-limit (manifest GETs per window), per replica",
    labelNames: ['upstream'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly upstreamRateLimitPaused = new Gauge({
    name: 'registry_upstream_ratelimit_paused_until_seconds',
    help: 'Unix time until which GETs to an upstream are paused after a 429 with Retry-After (0: not paused)',
    labelNames: ['upstream'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly upstreamRateLimitSpared = new Counter({
    name: 'registry_upstream_ratelimit_spared_total',
    help: 'Cached tags served stale instead of spending a manifest GET, the upstream budget being under UPSTREAM_RATELIMIT_RESERVE',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly upstreamBreakerState = new Gauge({
    name: 'registry_upstream_circuit_breaker_state',
    help: "An upstream's circuit breaker on this replica: 0 closed, 1 open, 2 half-open (a probe is running or due)",
    labelNames: ['upstream'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly upstreamBreakerOpenings = new Counter({
    name: 'registry_upstream_circuit_breaker_openings_total',
    help: "Times an upstream's circuit breaker opened (or reopened after a failed probe)",
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly upstreamNegativeHits = new Counter({
    name: 'registry_upstream_negative_cache_hits_total',
    help: 'Upstream requests answered from a remembered 404 (UPSTREAM_NEGATIVE_CACHE_MS) instead of being sent',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly inflightFills = new Gauge({
    name: 'registry_inflight_fills',
    help: 'Cache fills currently downloading from an upstream',
    registers: [this.registry],
  });
  readonly blobReadAheads = new Counter({
    name: 'registry_blob_read_aheads_total',
    help: 'Blobs (layers, then an image config) read ahead of a client (BLOB_READ_AHEAD) by outcome: filled (this replica downloaded it before it was asked for), skipped (stored, filling or held by another replica already, or 4 read-aheads running)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly digestMismatches = new Counter({
    name: 'registry_digest_mismatches_total',
    help: 'Upstream bodies whose digest did not match (never cached)',
    registers: [this.registry],
  });
  readonly cacheEvictions = new Counter({
    name: 'registry_cache_evictions_total',
    help: 'Cache entries evicted (least recently downloaded first) to keep a group under GROUP_STORAGE_QUOTA',
    registers: [this.registry],
  });
  readonly cacheEvictedBytes = new Counter({
    name: 'registry_cache_evicted_bytes_total',
    help: 'Bytes of the cache entries evicted to keep a group under GROUP_STORAGE_QUOTA',
    registers: [this.registry],
  });
  readonly lifecycleRuns = new Counter({
    name: 'registry_lifecycle_runs_total',
    help: 'Lifecycle job runs by job (destroy, orphans, cleanup_policy, quota) and outcome (success, failure)',
    labelNames: ['job', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly lifecycleRunDuration = new Histogram({
    name: 'registry_lifecycle_run_duration_seconds',
    help: 'Duration of lifecycle job runs',
    labelNames: ['job'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
    registers: [this.registry],
  });
  readonly lifecycleEntries = new Counter({
    name: 'registry_lifecycle_entries_total',
    help: 'Cache entries handled by lifecycle jobs: marked for destruction (cleanup_policy, quota, orphans) or deleted (destroy)',
    labelNames: ['job', 'action'] as const,
    registers: [this.registry],
  });
  readonly lifecycleObjects = new Counter({
    name: 'registry_lifecycle_objects_deleted_total',
    help: 'Objects deleted from the blob store by lifecycle jobs, by kind (committed, temporary)',
    labelNames: ['job', 'kind'] as const,
    registers: [this.registry],
  });
  readonly lifecycleBytes = new Counter({
    name: 'registry_lifecycle_bytes_total',
    help: 'Bytes handled by lifecycle jobs: of entries marked for destruction, or of committed objects deleted',
    labelNames: ['job', 'action'] as const,
    registers: [this.registry],
  });
  readonly queueJobs = new Gauge({
    name: 'registry_queue_jobs',
    help: 'Background jobs by state',
    labelNames: ['state'] as const,
    // One count for the whole queue, read at each scrape by the worker answering it (exposition()).
    aggregator: 'omit',
    registers: [this.registry],
  });

  constructor() {
    // nodejs_eventloop_lag_*: prom-client samples the event loop's delay with a timer, every 10 ms by
    // default. That timer woke an idle process 200 times a second, 4 % of a core on this project's
    // benchmark machine; every 100 ms still catches any stall longer than that.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    if (isClusterWorker()) offerToCluster(this.registry);
  }

  /**
   * Every metric in the Prometheus text format: this process's, or with HTTP_WORKERS > 1 those of all
   * the HTTP workers merged, plus the queue's job counts (set just before by the caller).
   */
  async exposition(): Promise<string> {
    if (!isClusterWorker()) return this.registry.metrics();
    const [merged, queue] = await Promise.all([clusterMetrics(), this.registry.getSingleMetricAsString('registry_queue_jobs')]);
    return `${merged.trimEnd()}\n${queue}\n`;
  }

  /** The hit and miss counters of one memory cache (registry_memory_cache_requests_total). */
  memoryCacheCounts(cache: 'authorization' | 'registry' | 'credential' | 'manifest' | 'blob'): LookupCounts {
    return { hit: this.tally(this.memoryCacheRequests, { cache, result: 'hit' }), miss: this.tally(this.memoryCacheRequests, { cache, result: 'miss' }) };
  }

  /**
   * A child of `counter` for a hot path: bind it once and keep it (CounterTallies). Only the counters
   * made with talliedCounter() have tallies.
   */
  tally<L extends string>(counter: Counter<L>, labels: LabelValues<L>): Tally {
    const tallies = this.talliesOf.get(counter as unknown as Counter<string>);
    if (!tallies) throw new Error('this counter has no tallies');
    return (tallies as unknown as CounterTallies<L>).tally(labels);
  }

  private talliedCounter<L extends string>(config: CounterConfiguration<L>): Counter<L> {
    const tallies = new CounterTallies<L>();
    const counter = new Counter<L>({ ...config, collect: tallies.collect });
    this.talliesOf.set(counter as unknown as Counter<string>, tallies as unknown as CounterTallies<string>);
    return counter;
  }
}
