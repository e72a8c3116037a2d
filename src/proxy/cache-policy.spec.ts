import {
  afterRevalidation,
  decideCached,
  expectedManifestDigest,
  freshUntil,
  isCacheableBlob,
  revalidationOf,
  upstreamAnswer,
  whenExhausted,
  type CachedCopy,
} from './cache-policy.js';

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 11, 3, 12);
const DIGEST = `sha256:${'a'.repeat(64)}`;
const OTHER = `sha256:${'b'.repeat(64)}`;

function copy(checkedHoursAgo: number, etag: string | null = null): CachedCopy {
  return { digest: DIGEST, upstreamEtag: etag, upstreamCheckedAt: new Date(NOW - checkedHoursAgo * HOUR) };
}

describe('cache policy (SPEC section 3, cache decision)', () => {
  describe('1. digest-addressed content', () => {
    it('is served from the cache with no upstream contact, however old the entry', () => {
      expect(decideCached(copy(10_000), { cacheValidityHours: 1 }, 'digest', NOW)).toEqual({ kind: 'serve', freshUntil: Infinity });
    });
  });

  describe('2. tags', () => {
    it('are served within the validity window, remembered until it closes', () => {
      expect(decideCached(copy(2), { cacheValidityHours: 24 }, 'tag', NOW)).toEqual({ kind: 'serve', freshUntil: NOW + 22 * HOUR });
    });

    it('are revalidated once the window has closed, and at its exact end', () => {
      expect(decideCached(copy(25), { cacheValidityHours: 24 }, 'tag', NOW)).toEqual({ kind: 'revalidate' });
      expect(decideCached(copy(24), { cacheValidityHours: 24 }, 'tag', NOW)).toEqual({ kind: 'revalidate' });
    });

    it('with a validity of 0 hours are never revalidated', () => {
      expect(decideCached(copy(100_000), { cacheValidityHours: 0 }, 'tag', NOW)).toEqual({ kind: 'serve', freshUntil: Infinity });
      expect(freshUntil(new Date(NOW), { cacheValidityHours: 0 })).toBe(Infinity);
    });

    it('keep the copy when the HEAD names the same digest', () => {
      expect(revalidationOf({ status: 200, digest: DIGEST }, copy(30))).toBe('unchanged');
      expect(afterRevalidation('unchanged')).toBe('serve-revalidated');
    });

    it('become a miss when the HEAD names another digest', () => {
      expect(revalidationOf({ status: 200, digest: OTHER }, copy(30))).toBe('changed');
      expect(afterRevalidation('changed')).toBe('fetch');
    });

    it('compare ETags when the upstream sends no digest, and count a missing ETag as changed', () => {
      expect(revalidationOf({ status: 200, etag: '"v1"' }, copy(30, '"v1"'))).toBe('unchanged');
      expect(revalidationOf({ status: 200, etag: '"v2"' }, copy(30, '"v1"'))).toBe('changed');
      expect(revalidationOf({ status: 200 }, copy(30, '"v1"'))).toBe('changed');
      expect(revalidationOf({ status: 200, etag: '"v1"' }, copy(30, null))).toBe('changed');
    });

    it('become a miss when the tag is gone from its upstream (401, 403, 404)', () => {
      for (const status of [401, 403, 404]) expect(revalidationOf({ status }, copy(30))).toBe('changed');
    });

    it('are served stale when the revalidating HEAD fails (down, 5xx, 429)', () => {
      expect(revalidationOf({ failed: true }, copy(30))).toBe('unavailable');
      for (const status of [500, 502, 503, 429, 302]) expect(revalidationOf({ status }, copy(30))).toBe('unavailable');
      expect(afterRevalidation('unavailable')).toBe('serve-stale');
    });

    it('are served stale rather than fetched while the upstream budget is under its reserve', () => {
      expect(afterRevalidation('changed', { conserveBudget: true })).toBe('serve-stale');
      expect(afterRevalidation('unchanged', { conserveBudget: true })).toBe('serve-revalidated');
      expect(afterRevalidation('changed', { conserveBudget: false })).toBe('fetch');
    });
  });

  describe('3. misses walk the upstreams in position order', () => {
    it('take the first 2xx', () => {
      for (const status of [200, 204, 206]) expect(upstreamAnswer(status)).toBe('found');
    });

    it('ask the next upstream on 401, 403 and 404', () => {
      for (const status of [401, 403, 404]) expect(upstreamAnswer(status)).toBe('not-here');
    });

    it('count anything else as a failure of that upstream', () => {
      for (const status of [301, 400, 405, 429, 500, 502, 503, 504]) expect(upstreamAnswer(status)).toBe('failed');
    });

    it('end in a 404 when every upstream said not here, with or without a copy', () => {
      expect(whenExhausted(0, false)).toBe('not-found');
      expect(whenExhausted(0, true)).toBe('not-found');
    });
  });

  describe('4. upstreams that cannot answer', () => {
    it('leave the cached copy to be served stale', () => {
      expect(whenExhausted(1, true)).toBe('stale');
      expect(whenExhausted(3, true)).toBe('stale');
    });

    it('without a copy, make the pull unavailable', () => {
      expect(whenExhausted(2, false)).toBe('unavailable');
    });
  });

  describe('6. verification', () => {
    it('checks a manifest by digest against the digest asked for', () => {
      expect(expectedManifestDigest({ kind: 'digest', digest: DIGEST }, OTHER)).toBe(DIGEST);
    });

    it('checks a manifest by tag against the sha256 digest the upstream announced, when it announced one', () => {
      expect(expectedManifestDigest({ kind: 'tag' }, DIGEST)).toBe(DIGEST);
      expect(expectedManifestDigest({ kind: 'tag' }, `sha512:${'c'.repeat(128)}`)).toBeUndefined();
      expect(expectedManifestDigest({ kind: 'tag' }, undefined)).toBeUndefined();
    });
  });

  describe('8. limits', () => {
    it('cache a blob only when its length is declared and within MAX_CACHED_FILE_SIZE', () => {
      expect(isCacheableBlob(1000, 1000)).toBe(true);
      expect(isCacheableBlob(0, 1000)).toBe(true);
      expect(isCacheableBlob(1001, 1000)).toBe(false);
      expect(isCacheableBlob(undefined, 1000)).toBe(false);
      expect(isCacheableBlob(Number.NaN, 1000)).toBe(false);
      expect(isCacheableBlob(-1, 1000)).toBe(false);
    });
  });
});
