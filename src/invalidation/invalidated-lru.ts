import { LRUCache } from 'lru-cache';
import type { InvalidationBus } from './invalidation-bus.js';

/** Counters of a memory cache's lookups (a metric's `hit` and `miss` children). */
export interface LookupCounts {
  hit: { inc(): void };
  miss: { inc(): void };
}

/**
 * An LRU of things remembered for a while that the InvalidationBus can make wrong: every change clears
 * it, and a value read before a change (`generation` taken before the read) is not kept after it.
 */
export class InvalidatedLru<V extends object> {
  private readonly items: LRUCache<string, V>;
  private readonly counts?: LookupCounts;
  private changes = 0;

  constructor(bus: InvalidationBus, options: { ttlMs: number; max?: number; maxSize?: number; sizeOf?: (value: V) => number; counts?: LookupCounts }) {
    this.counts = options.counts;
    // ttlResolution 0: the clock is read on each lookup (performance.now(), tens of nanoseconds). The
    // default (1 ms) caches it and starts a timer to forget it, up to a thousand timers a second per cache
    // on a busy pull path.
    this.items = new LRUCache<string, V>(
      options.maxSize
        ? { ttl: options.ttlMs, ttlResolution: 0, maxSize: options.maxSize, sizeCalculation: options.sizeOf ?? (() => 1) }
        : { ttl: options.ttlMs, ttlResolution: 0, max: options.max ?? 1000 },
    );
    bus.onChange(() => {
      this.changes++;
      this.items.clear();
    });
  }

  /** Counts changes; take it before reading what set() will keep. */
  get generation(): number {
    return this.changes;
  }

  /**
   * The value kept under `key`, if any, counted as a hit or a miss when the cache has counts; `counted`
   * false: not counted (a caller that may look again through the full path counts with countHit() what
   * it uses).
   */
  get(key: string, counted = true): V | undefined {
    const value = this.items.get(key);
    if (counted && this.counts) (value ? this.counts.hit : this.counts.miss).inc();
    return value;
  }

  /** Counts a hit found by an uncounted get() and used. */
  countHit(): void {
    this.counts?.hit.inc();
  }

  delete(key: string): void {
    this.items.delete(key);
  }

  /** Keeps `value` for `ttlMs` (at most the cache's TTL) unless a change came since `generation`. */
  set(key: string, value: V, generation: number, ttlMs = Infinity): void {
    const ttl = Math.min(this.items.ttl, ttlMs);
    if (generation !== this.changes || ttl <= 0) return;
    this.items.set(key, value, { ttl });
  }
}
