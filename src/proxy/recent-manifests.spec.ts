import { LocalInvalidationBus } from '../invalidation/invalidation-bus.js';
import { MetricsService } from '../observability/metrics.service.js';
import { Digest } from '../oci/index.js';
import type { LimitsConfig } from '../config/config.js';
import { RecentManifests, type RecentManifest, type RememberAs } from './recent-manifests.js';

const KiB = 1024;

function manifest(text: string, entryId = 1): RecentManifest {
  const bytes = Buffer.from(text);
  return { entryId, digest: Digest.of(bytes).toString(), contentType: 'application/vnd.oci.image.manifest.v1+json', bytes };
}

function setup(limits: Partial<LimitsConfig> = {}) {
  const bus = new LocalInvalidationBus();
  const metrics = new MetricsService();
  const recent = new RecentManifests({ memoryCacheTtlMs: 5000, memoryCacheSize: 64 * KiB, ...limits } as LimitsConfig, bus, metrics);
  const as = (over: Partial<RememberAs> = {}): RememberAs => ({
    scope: '1',
    relativePath: '/library/alpine/manifests/latest',
    freshUntil: Infinity,
    generation: recent.generation,
    ...over,
  });
  return { bus, recent, as };
}

describe('RecentManifests', () => {
  it('answers a remembered manifest by registry and path, and nothing for another registry', () => {
    const { recent, as } = setup();
    const m = manifest('{"schemaVersion":2}');
    recent.remember(as(), m);
    expect(recent.get('1', '/library/alpine/manifests/latest')).toEqual(m);
    expect(recent.get('2', '/library/alpine/manifests/latest')).toBeUndefined();
    expect(recent.get('1', '/library/alpine/manifests/edge')).toBeUndefined();
  });

  it('keeps nothing whose bytes do not match the digest', () => {
    const { recent, as } = setup();
    recent.remember(as(), { ...manifest('{"a":1}'), bytes: Buffer.from('{"a":2}') });
    expect(recent.get('1', '/library/alpine/manifests/latest')).toBeUndefined();
  });

  it('forgets everything on a change, and does not keep what was read before the change', () => {
    const { bus, recent, as } = setup();
    recent.remember(as(), manifest('{"a":1}'));
    const readBefore = as();
    bus.changed('a purge');
    expect(recent.get('1', '/library/alpine/manifests/latest')).toBeUndefined();
    recent.remember(readBefore, manifest('{"a":1}'));
    expect(recent.get('1', '/library/alpine/manifests/latest')).toBeUndefined();
    recent.remember(as(), manifest('{"a":1}'));
    expect(recent.get('1', '/library/alpine/manifests/latest')).toBeDefined();
  });

  it('never keeps a tag past its validity window, nor past MEMORY_CACHE_TTL_MS', async () => {
    // Deliberate: real time passes for the TTLs to run out (lru-cache reads the performance clock it captured
    // at import, which fake timers cannot move, and RecentManifests takes no clock).
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const { recent, as } = setup({ memoryCacheTtlMs: 600 });
    recent.remember(as({ freshUntil: Date.now() - 1 }), manifest('{"expired":true}'));
    expect(recent.get('1', '/library/alpine/manifests/latest')).toBeUndefined();

    recent.remember(as({ relativePath: '/a/manifests/soon', freshUntil: Date.now() + 200 }), manifest('{"soon":true}'));
    recent.remember(as({ relativePath: '/a/manifests/later' }), manifest('{"later":true}'));
    expect(recent.get('1', '/a/manifests/soon')).toBeDefined();
    await sleep(300);
    expect(recent.get('1', '/a/manifests/soon')).toBeUndefined();
    expect(recent.get('1', '/a/manifests/later')).toBeDefined();
    await sleep(400);
    expect(recent.get('1', '/a/manifests/later')).toBeUndefined();
  });

  it('stays within MEMORY_CACHE_SIZE, dropping the least recently used, and skips manifests above a sixteenth of it', () => {
    const { recent, as } = setup({ memoryCacheSize: 16 * KiB });
    expect(recent.wants(KiB)).toBe(true);
    expect(recent.wants(KiB + 1)).toBe(false);
    for (let i = 0; i < 20; i++) recent.remember(as({ relativePath: `/m/manifests/${i}` }), manifest(`${i}`.padEnd(KiB, ' ')));
    const kept = Array.from({ length: 20 }, (_, i) => recent.get('1', `/m/manifests/${i}`)).filter(Boolean);
    expect(kept).toHaveLength(16);
    expect(recent.get('1', '/m/manifests/19')).toBeDefined();
    expect(recent.get('1', '/m/manifests/0')).toBeUndefined();
  });

  it('is off with MEMORY_CACHE_TTL_MS=0', () => {
    const { recent, as } = setup({ memoryCacheTtlMs: 0 });
    expect(recent.wants(10)).toBe(false);
    recent.remember(as(), manifest('{}'));
    expect(recent.get('1', '/library/alpine/manifests/latest')).toBeUndefined();
  });
});
