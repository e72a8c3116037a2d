import { Inject, Injectable } from '@nestjs/common';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { InvalidatedLru } from '../invalidation/invalidated-lru.js';
import { MetricsService } from '../observability/metrics.service.js';

/** Blob entries remembered per replica: one per (registry scope, blob) pulled within MEMORY_CACHE_TTL_MS. */
const REMEMBERED_BLOBS = 10_000;

/**
 * The live blob entries one replica served lately, by registry scope and path: a warm blob pulled again
 * within MEMORY_CACHE_TTL_MS needs no database read before its bytes go out (from storage, or from nginx
 * or the object store with offload). The rules of RecentManifests: purges, evictions, uploads and every
 * committed change to access or upstreams forget everything (InvalidationBus), and an entry read before
 * such a change is not kept. An object found missing is forgotten at once (`forget`): the request
 * becomes a miss as before. Downloads are still counted, per request, by the caller.
 */
@Injectable()
export class RecentBlobEntries {
  private readonly items?: InvalidatedLru<CacheEntry>;

  constructor(@Inject(limitsConfig.KEY) limits: LimitsConfig, @Inject(INVALIDATION_BUS) bus: InvalidationBus, metrics: MetricsService) {
    if (limits.memoryCacheTtlMs > 0) {
      this.items = new InvalidatedLru<CacheEntry>(bus, { ttlMs: limits.memoryCacheTtlMs, max: REMEMBERED_BLOBS, counts: metrics.memoryCacheCounts('blob') });
    }
  }

  /** Counts changes; take it before reading the entry that remember() will keep. */
  get generation(): number {
    return this.items?.generation ?? 0;
  }

  /** `counted` false: see InvalidatedLru.get (countHit() counts it once used). */
  get(scope: string, relativePath: string, counted = true): CacheEntry | undefined {
    return this.items?.get(key(scope, relativePath), counted);
  }

  countHit(): void {
    this.items?.countHit();
  }

  remember(scope: string, relativePath: string, entry: CacheEntry, generation: number): void {
    this.items?.set(key(scope, relativePath), entry, generation);
  }

  forget(scope: string, relativePath: string): void {
    this.items?.delete(key(scope, relativePath));
  }
}

function key(scope: string, relativePath: string): string {
  return `${scope} ${relativePath}`;
}
