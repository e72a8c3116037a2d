/**
 * The cache decision of the pull path (SPEC section 3), as pure functions of what is known: the cached
 * entry, its upstream's validity window, the clock and what upstreams answered. The stores
 * (ProxyManifestStore, ProxyBlobStore) do the I/O each decision asks for; everything they decide is here
 * and unit-tested branch by branch (cache-policy.spec.ts).
 */

/** What the policy needs of a cached entry. */
export interface CachedCopy {
  digest: string;
  upstreamEtag: string | null;
  upstreamCheckedAt: Date;
}

/** What the policy needs of the entry's upstream. */
export interface UpstreamValidity {
  /** Hours a tag is served without asking the upstream again; 0 means forever. */
  cacheValidityHours: number;
}

export type ReferenceKind = 'tag' | 'digest';

/**
 * A request that found a cached copy:
 * - `serve`: digest-addressed content (never asks an upstream), or a tag within its validity window;
 *   `freshUntil` is when a remembered copy must be looked at again (ms since the epoch, Infinity: never);
 * - `revalidate`: a tag past its window: HEAD its upstream before serving it.
 */
export type CachedDecision = { kind: 'serve'; freshUntil: number } | { kind: 'revalidate' };

export function decideCached(copy: CachedCopy, upstream: UpstreamValidity, reference: ReferenceKind, now: number): CachedDecision {
  if (reference === 'digest') return { kind: 'serve', freshUntil: Infinity };
  const until = freshUntil(copy.upstreamCheckedAt, upstream);
  return until > now ? { kind: 'serve', freshUntil: until } : { kind: 'revalidate' };
}

/** When a tag checked at `checkedAt` needs asking its upstream again (validity 0: never). */
export function freshUntil(checkedAt: Date, upstream: UpstreamValidity): number {
  if (upstream.cacheValidityHours === 0) return Infinity;
  return checkedAt.getTime() + upstream.cacheValidityHours * 3_600_000;
}

/** What a revalidating HEAD said about the cached tag. */
export type Revalidation = 'unchanged' | 'changed' | 'unavailable';

/** The upstream's answer to a HEAD of the tag, as a revalidation verdict (digest first, then ETag). */
export type HeadAnswer = { status: number; digest?: string; etag?: string } | { failed: true };

export function revalidationOf(answer: HeadAnswer, copy: CachedCopy): Revalidation {
  if ('failed' in answer) return 'unavailable';
  const answered = upstreamAnswer(answer.status);
  if (answered === 'not-here') return 'changed';
  if (answered === 'failed') return 'unavailable';
  if (answer.digest) return answer.digest === copy.digest ? 'unchanged' : 'changed';
  return answer.etag && copy.upstreamEtag && answer.etag === copy.upstreamEtag ? 'unchanged' : 'changed';
}

/**
 * After revalidating a stale tag:
 * - `serve-revalidated`: same digest: bump the check time and serve the copy;
 * - `fetch`: a new digest (or gone there): a miss;
 * - `serve-stale`: the upstream could not answer: serve the copy, logged and counted as stale. So is a
 *   change while the upstream's rate-limit budget is under its reserve (`conserveBudget`): the new
 *   manifest waits until the budget recovers rather than spending a GET on it.
 */
export type AfterRevalidation = 'serve-revalidated' | 'fetch' | 'serve-stale';

export function afterRevalidation(verdict: Revalidation, options: { conserveBudget?: boolean } = {}): AfterRevalidation {
  switch (verdict) {
    case 'unchanged':
      return 'serve-revalidated';
    case 'unavailable':
      return 'serve-stale';
    case 'changed':
      return options.conserveBudget ? 'serve-stale' : 'fetch';
  }
}

/**
 * One upstream's answer while walking the registry's upstreams in position order:
 * - `found`: 2xx, the first one wins;
 * - `not-here`: 401, 403 or 404: ask the next upstream (none left: not found);
 * - `failed`: anything else (5xx, 429, an unexpected 3xx): the upstream is unavailable for this request.
 */
export type UpstreamAnswer = 'found' | 'not-here' | 'failed';

export function upstreamAnswer(status: number): UpstreamAnswer {
  if (status >= 200 && status < 300) return 'found';
  if (status === 401 || status === 403 || status === 404) return 'not-here';
  return 'failed';
}

/**
 * Every upstream was asked and none had it:
 * - `stale`: a cached copy exists and some upstream could not answer: serve the copy (decision 4);
 * - `not-found`: each upstream said not here (OCI 404);
 * - `unavailable`: no copy and at least one upstream could not answer (503; 504 when they all timed out).
 */
export type Exhausted = 'stale' | 'not-found' | 'unavailable';

export function whenExhausted(failures: number, hasCopy: boolean): Exhausted {
  if (failures > 0 && hasCopy) return 'stale';
  return failures === 0 ? 'not-found' : 'unavailable';
}

/**
 * Whether a blob the upstream is sending is cached (decision 8): it must declare its length, and that
 * length must be within MAX_CACHED_FILE_SIZE; anything else passes through uncached.
 */
export function isCacheableBlob(declaredLength: number | undefined, maxCachedFileSize: number): declaredLength is number {
  return declaredLength !== undefined && Number.isSafeInteger(declaredLength) && declaredLength >= 0 && declaredLength <= maxCachedFileSize;
}

/**
 * Which digest a fetched manifest must have (decision 6): the one asked for, or for a tag the one the
 * upstream announced (sha256 only: another algorithm cannot be checked here, the computed digest keys it).
 */
export function expectedManifestDigest(requested: { kind: 'digest'; digest: string } | { kind: 'tag' }, announced: string | undefined): string | undefined {
  if (requested.kind === 'digest') return requested.digest;
  return announced?.startsWith('sha256:') ? announced : undefined;
}
