import { Inject, Injectable } from '@nestjs/common';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { InvalidatedLru } from '../invalidation/invalidated-lru.js';
import { MetricsService } from '../observability/metrics.service.js';
import { Digest } from '../oci/index.js';

/** A cached manifest a replica keeps in memory, exactly as the cache entry describes it. */
export interface RecentManifest {
  entryId: number;
  digest: string;
  contentType: string;
  bytes: Buffer;
}

/** Where a manifest was read from the cache, and until when it may be served without asking again. */
export interface RememberAs {
  /** The registry as the pull saw it: its id and the upstreams asked (`pullScopeOf`). */
  scope: string;
  relativePath: string;
  /** Epoch milliseconds: a tag's validity window ends here (Infinity for digests and validity 0). */
  freshUntil: number;
  /** `generation` when the entry was read: a change since then means the read may be out of date. */
  generation: number;
}

/** A single manifest larger than this share of MEMORY_CACHE_SIZE is always read from storage. */
const LARGEST_SHARE = 16;

/**
 * The hot manifests of one replica, by registry and path: a cached manifest pulled again within
 * MEMORY_CACHE_TTL_MS is answered from memory, with no database read and no storage read. A tag is never
 * kept past its validity window (the next pull revalidates it as usual); purges, evictions, uploads and
 * every committed change to access or upstreams forget everything (InvalidationBus). Bytes are checked against their digest before they
 * are kept. Downloads are still counted, per request, by the caller.
 */
@Injectable()
export class RecentManifests {
  private readonly items?: InvalidatedLru<RecentManifest>;
  private readonly largest: number;

  constructor(@Inject(limitsConfig.KEY) limits: LimitsConfig, @Inject(INVALIDATION_BUS) bus: InvalidationBus, metrics: MetricsService) {
    this.largest = Math.floor(limits.memoryCacheSize / LARGEST_SHARE);
    if (limits.memoryCacheTtlMs > 0 && this.largest > 0) {
      this.items = new InvalidatedLru<RecentManifest>(bus, {
        ttlMs: limits.memoryCacheTtlMs,
        maxSize: limits.memoryCacheSize,
        sizeOf: (item) => Math.max(1, item.bytes.length),
        counts: metrics.memoryCacheCounts('manifest'),
      });
    }
  }

  /** Counts changes; pass it to remember() from before the entry was read. */
  get generation(): number {
    return this.items?.generation ?? 0;
  }

  /** Whether remember() would keep a manifest of this size at all (so the caller reads the bytes). */
  wants(size: number): boolean {
    return this.items !== undefined && size <= this.largest;
  }

  /** `counted` false: see InvalidatedLru.get (countHit() counts it once used). */
  get(scope: string, relativePath: string, counted = true): RecentManifest | undefined {
    return this.items?.get(key(scope, relativePath), counted);
  }

  countHit(): void {
    this.items?.countHit();
  }

  /** Keeps `manifest` when it is still current and its bytes match its digest. */
  remember(as: RememberAs, manifest: RecentManifest): void {
    if (!this.items || !this.wants(manifest.bytes.length)) return;
    if (Digest.of(manifest.bytes).toString() !== manifest.digest) return;
    this.items.set(key(as.scope, as.relativePath), manifest, as.generation, as.freshUntil - Date.now());
  }
}

function key(scope: string, relativePath: string): string {
  return `${scope} ${relativePath}`;
}
