import { LRUCache } from 'lru-cache';
import type { InvalidationBus } from './invalidation-bus.js';

/**
 * An LRU of things remembered for a while that the InvalidationBus can make wrong: every change clears
 * it, and a value read before a change (`generation` taken before the read) is not kept after it.
 */
export class InvalidatedLru<V extends object> {
  private readonly items: LRUCache<string, V>;
  private changes = 0;

  constructor(bus: InvalidationBus, options: { ttlMs: number; max?: number; maxSize?: number; sizeOf?: (value: V) => number }) {
    this.items = new LRUCache<string, V>(
      options.maxSize
        ? { ttl: options.ttlMs, maxSize: options.maxSize, sizeCalculation: options.sizeOf ?? (() => 1) }
        : { ttl: options.ttlMs, max: options.max ?? 1000 },
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

  get(key: string): V | undefined {
    return this.items.get(key);
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
