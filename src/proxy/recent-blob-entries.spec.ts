import { describe, expect, it } from '@jest/globals';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import type { LimitsConfig } from '../config/config.js';
import { LocalInvalidationBus } from '../invalidation/invalidation-bus.js';
import { MetricsService } from '../observability/metrics.service.js';
import { RecentBlobEntries } from './recent-blob-entries.js';

const PATH = '/library/alpine/blobs/sha256:' + 'a'.repeat(64);

function entry(id: number): CacheEntry {
  return { id, upstreamId: 1, relativePath: PATH, digest: 'sha256:' + 'a'.repeat(64), size: 3 } as CacheEntry;
}

function setup(limits: Partial<LimitsConfig> = {}) {
  const bus = new LocalInvalidationBus();
  const recent = new RecentBlobEntries({ memoryCacheTtlMs: 5000, memoryCacheSize: 1024, ...limits } as LimitsConfig, bus, new MetricsService());
  return { bus, recent };
}

describe('RecentBlobEntries', () => {
  it('answers a remembered entry by registry scope and path, and nothing for another scope or path', () => {
    const { recent } = setup();
    recent.remember('1:1', PATH, entry(7), recent.generation);
    expect(recent.get('1:1', PATH)?.id).toBe(7);
    expect(recent.get('1:1,2', PATH)).toBeUndefined();
    expect(recent.get('2:1', PATH)).toBeUndefined();
    expect(recent.get('1:1', PATH.replace('alpine', 'busybox'))).toBeUndefined();
  });

  it('forgets everything on a change, and does not keep what was read before the change', () => {
    const { bus, recent } = setup();
    recent.remember('1:1', PATH, entry(7), recent.generation);
    const readBefore = recent.generation;
    bus.changed('a purge');
    expect(recent.get('1:1', PATH)).toBeUndefined();
    recent.remember('1:1', PATH, entry(7), readBefore);
    expect(recent.get('1:1', PATH)).toBeUndefined();
    recent.remember('1:1', PATH, entry(8), recent.generation);
    expect(recent.get('1:1', PATH)?.id).toBe(8);
  });

  it('forgets one entry whose object vanished, and keeps the others', () => {
    const { recent } = setup();
    const other = PATH.replace('alpine', 'busybox');
    recent.remember('1:1', PATH, entry(7), recent.generation);
    recent.remember('1:1', other, entry(9), recent.generation);
    recent.forget('1:1', PATH);
    expect(recent.get('1:1', PATH)).toBeUndefined();
    expect(recent.get('1:1', other)?.id).toBe(9);
  });

  it('remembers nothing with MEMORY_CACHE_TTL_MS=0', () => {
    const { recent } = setup({ memoryCacheTtlMs: 0 });
    recent.remember('1:1', PATH, entry(7), recent.generation);
    expect(recent.get('1:1', PATH)).toBeUndefined();
  });
});
