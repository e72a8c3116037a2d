import type { Readable } from 'node:stream';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { CacheEntryCreateOrUpdateService } from '../cache-entries/cache-entry-create-or-update.service.js';
import { CacheEntryLookupService } from '../cache-entries/cache-entry-lookup.service.js';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { StorageQuotaService } from '../lifecycle/storage-quota.service.js';
import { MetricsService } from '../observability/metrics.service.js';
import {
  DEFAULT_MANIFEST_ACCEPT,
  Digest,
  OciError,
  OciErrorCode,
  relativePath,
  relativePathOf,
  resolveManifestMediaType,
  type ManifestRequest,
} from '../oci/index.js';
import { BLOB_STORE, BlobNotFoundError, type BlobStore } from '../storage/blob-store.js';
import type { UpstreamResponse } from '../upstreams/client/upstream-client.js';
import { UpstreamClient } from '../upstreams/client/upstream-client.js';
import { UpstreamError, classifyUpstreamError } from '../upstreams/client/upstream-error.js';
import { readManifestBody } from '../oci/manifest-body.js';
import type { PullMethod } from './proxy-blob-store.js';
import {
  afterRevalidation,
  decideCached,
  expectedManifestDigest,
  freshUntil,
  revalidationOf,
  upstreamAnswer,
  type HeadAnswer,
  type Revalidation,
} from './cache-policy.js';
import { discard, header, manifestResponse, notFoundOrUnavailable, statusError } from './pull-responses.js';
import { pullScopeOf, type PullTarget, type PullUpstream } from '../upstreams/pull-target.js';
import type { BufferedPullResponse, PullResponse } from './pull-response.js';
import { LayerReadAhead } from './layer-read-ahead.js';
import { RecentManifests, type RecentManifest, type RememberAs } from './recent-manifests.js';

/** The response headers of each remembered manifest, built once (they never change for that manifest). */
const recentHeaders = new WeakMap<RecentManifest, Record<string, string>>();

interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  contentType: string;
  entryId?: number;
}

/**
 * Manifests of the pull path (distribution's proxymanifeststore): the cache decision is cache-policy.ts's,
 * this store does what it asks. A cached manifest by digest, or by tag within its upstream's validity
 * window, is served from the cache (small ones from memory, RecentManifests); a stale tag is revalidated
 * by HEAD; a miss walks the registry's upstreams in position order, verifies the manifest, stores it
 * under the tag and under its digest. Concurrent misses of one manifest in this process share one fetch.
 * An entry whose stored object is gone is handed to the destroy job and taken as a miss.
 */
@Injectable()
export class ProxyManifestStore {
  private readonly logger = new Logger(ProxyManifestStore.name);
  private readonly manifestFetches = new Map<string, Promise<FetchedManifest>>();
  /** The counters of the hottest path (a remembered manifest), bound once. */
  private readonly recentCounters: { hit: { inc(): void }; bytes: { inc(value: number): void } };

  constructor(
    private readonly lookup: CacheEntryLookupService,
    private readonly cacheEntries: CacheEntryCreateOrUpdateService,
    private readonly upstreams: UpstreamClient,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    private readonly metrics: MetricsService,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    private readonly quota: StorageQuotaService,
    private readonly recentManifests: RecentManifests,
    private readonly layerOrder: LayerReadAhead,
  ) {
    this.recentCounters = {
      hit: metrics.tally(metrics.cacheRequests, { result: 'hit', kind: 'manifest' }),
      bytes: metrics.tally(metrics.bytesServed, { source: 'cache' }),
    };
  }

  // ---------------------------------------------------------------- manifests

  async manifest(target: PullTarget, request: ManifestRequest, method: PullMethod, accept?: string): Promise<PullResponse> {
    if (request.reference.kind === 'digest' && !request.reference.digest.isSupported) {
      throw new OciError(OciErrorCode.DIGEST_INVALID, `unsupported digest algorithm ${request.reference.digest.algorithm}`);
    }
    const path = relativePathOf(request);
    // A registry narrowed to some of its upstreams (mirror `ns`) is a scope of its own: nothing learned through one host answers another's.
    const scope = pullScopeOf(target);
    const recent = this.recentManifests.get(scope, path);
    if (recent) return this.serveRecentManifest(recent, method);
    const generation = this.recentManifests.generation;
    let [entry]: (CacheEntry | undefined)[] = await this.lookup.findLive(
      target.upstreams.map((u) => u.id),
      path,
    );
    if (entry) {
      const served = await this.serveFromCache(entry, target, request, method, { scope, relativePath: path, generation }, accept);
      // Its object is gone (the entry is handed to the destroy job): the upstream is asked, as on a miss.
      if (served === 'lost') entry = undefined;
      else if (served !== 'fetch') return served;
    }
    try {
      const fetched = await this.fetchManifestCoalesced(target, scope, request, path, accept);
      this.metrics.cacheRequests.inc({ result: 'miss', kind: 'manifest' });
      if (fetched.entryId !== undefined) this.lookup.recordDownload(fetched.entryId);
      return manifestResponse(fetched.digest, fetched.contentType, fetched.bytes.length, method === 'GET' ? fetched.bytes : undefined);
    } catch (err) {
      const stale = entry && isUnavailable(err) ? await this.serveCachedManifest(entry, method, 'stale') : undefined;
      if (stale) return stale;
      throw err;
    }
  }

  /**
   * SPEC section 3's decision for a cached entry (cache-policy.ts): its answer; 'fetch' when the upstream is
   * to be asked instead (the entry still answers if the upstream cannot); 'lost' when the entry's object
   * turned out to be gone (see serveCachedManifest).
   */
  private async serveFromCache(
    entry: CacheEntry,
    target: PullTarget,
    request: ManifestRequest,
    method: PullMethod,
    remember: Omit<RememberAs, 'freshUntil'>,
    accept?: string,
  ): Promise<PullResponse | 'fetch' | 'lost'> {
    const upstream = target.upstreams.find((u) => u.id === entry.upstreamId)!;
    const decision = decideCached(entry, upstream, request.reference.kind, Date.now());
    if (decision.kind === 'serve') return (await this.serveCachedManifest(entry, method, 'hit', { ...remember, freshUntil: decision.freshUntil })) ?? 'lost';
    const verdict = await this.revalidateTag(upstream, remember.relativePath, entry, accept);
    // A change while the upstream's rate-limit budget is under its reserve: the GET waits (UpstreamHealth counts it).
    const conserveBudget = verdict === 'changed' && this.upstreams.health.spareManifestGet(upstream.id, remember.relativePath);
    switch (afterRevalidation(verdict, { conserveBudget })) {
      case 'serve-revalidated': {
        const checkedAt = new Date();
        await this.lookup.markChecked(entry.id, checkedAt);
        return (await this.serveCachedManifest(entry, method, 'revalidated', { ...remember, freshUntil: freshUntil(checkedAt, upstream) })) ?? 'lost';
      }
      case 'serve-stale':
        return (await this.serveCachedManifest(entry, method, 'stale')) ?? 'lost';
      case 'fetch':
        return 'fetch';
    }
  }

  /**
   * The answer to a manifest pull this replica served moments ago (RecentManifests), for answers given from
   * memory before the framework sees the request (RegistryPullController.rememberedAnswer); undefined when
   * it is not remembered (manifest() does the rest). The lookup counts as a hit only when it answers.
   */
  rememberedManifest(target: PullTarget, request: ManifestRequest, method: PullMethod): BufferedPullResponse | undefined {
    if (request.reference.kind === 'digest' && !request.reference.digest.isSupported) return undefined;
    const recent = this.recentManifests.get(pullScopeOf(target), relativePathOf(request), false);
    if (!recent) return undefined;
    this.recentManifests.countHit();
    return this.serveRecentManifest(recent, method);
  }

  /**
   * A cached manifest from storage. With `remember` (a hit or a successful revalidation, on GET), a small
   * manifest is read whole, verified and kept in memory for the next pulls (RecentManifests). Undefined when
   * the entry's object is gone or cut short: the entry is handed to the destroy job (the caller asks the upstream).
   */
  private async serveCachedManifest(
    entry: CacheEntry,
    method: PullMethod,
    result: 'hit' | 'stale' | 'revalidated',
    remember?: RememberAs,
  ): Promise<PullResponse | undefined> {
    let body: Readable | Buffer | undefined;
    if (method === 'GET') {
      try {
        body = await this.blobs.createReadStream(entry.storageKey);
        if (remember && this.recentManifests.wants(entry.size)) {
          const bytes = await readManifestBody(body as Readable, entry.size, entry.size);
          if (bytes.length !== entry.size) return await this.objectLost(entry);
          this.recentManifests.remember(remember, { entryId: entry.id, digest: entry.digest, contentType: entry.contentType, bytes });
          body = bytes;
        }
      } catch (err) {
        if (err instanceof BlobNotFoundError || OciError.is(err, OciErrorCode.MANIFEST_INVALID)) return await this.objectLost(entry);
        throw err;
      }
    }
    this.countHit(result, 'manifest');
    this.lookup.recordDownload(entry.id);
    if (body) this.metrics.bytesServed.inc({ source: 'cache' }, entry.size);
    return manifestResponse(entry.digest, entry.contentType, entry.size, body);
  }

  /** A manifest this replica served moments ago (RecentManifests): no database, no storage. */
  private serveRecentManifest(recent: RecentManifest, method: PullMethod): BufferedPullResponse {
    this.recentCounters.hit.inc();
    this.lookup.recordDownload(recent.entryId);
    if (method === 'GET') this.recentCounters.bytes.inc(recent.bytes.length);
    let headers = recentHeaders.get(recent);
    if (!headers) {
      headers = manifestResponse(recent.digest, recent.contentType, recent.bytes.length, undefined).headers;
      recentHeaders.set(recent, headers);
    }
    return { status: 200, headers, body: method === 'GET' ? recent.bytes : undefined };
  }

  /** HEAD the tag on the upstream the entry came from; cache-policy.ts reads the answer. */
  private async revalidateTag(upstream: PullUpstream, path: string, entry: CacheEntry, accept?: string): Promise<Revalidation> {
    let answer: HeadAnswer;
    try {
      const res = await this.upstreams.head(upstream.descriptor, path, { accept: manifestAccept(accept) });
      answer = { status: res.status, digest: header(res, 'docker-content-digest'), etag: header(res, 'etag') };
    } catch (err) {
      this.countUpstreamFailure(classifyUpstreamError(err, upstream.id).kind);
      this.logger.warn(`revalidating ${path} on upstream ${upstream.id} failed: ${(err as Error).message}`);
      answer = { failed: true };
    }
    if ('status' in answer && upstreamAnswer(answer.status) === 'failed') this.countUpstreamFailure('status');
    return revalidationOf(answer, entry);
  }

  private fetchManifestCoalesced(target: PullTarget, scope: string, request: ManifestRequest, path: string, accept?: string): Promise<FetchedManifest> {
    const key = `${scope} ${path}`;
    let fetch = this.manifestFetches.get(key);
    if (!fetch) {
      fetch = this.fetchManifest(target, request, path, accept).finally(() => this.manifestFetches.delete(key));
      this.manifestFetches.set(key, fetch);
    }
    return fetch;
  }

  /** A manifest miss: the first upstream in position order that has it; verified, stored, recorded. */
  private async fetchManifest(target: PullTarget, request: ManifestRequest, path: string, accept?: string): Promise<FetchedManifest> {
    const failures: unknown[] = [];
    for (const upstream of target.upstreams) {
      let res: UpstreamResponse;
      try {
        res = await this.upstreams.get(upstream.descriptor, path, { accept: manifestAccept(accept) });
      } catch (err) {
        failures.push(this.upstreamFailed(upstream, path, err));
        continue;
      }
      const answer = upstreamAnswer(res.status);
      if (answer === 'found') return this.storeManifest(upstream, request, path, res);
      discard(res);
      if (answer === 'failed') failures.push(this.upstreamFailed(upstream, path, statusError(res.status, upstream.id)));
    }
    throw notFoundOrUnavailable(OciErrorCode.MANIFEST_UNKNOWN, failures);
  }

  private async storeManifest(upstream: PullUpstream, request: ManifestRequest, path: string, res: UpstreamResponse): Promise<FetchedManifest> {
    const declared = Number(header(res, 'content-length'));
    const bytes = await readManifestBody(res.body, this.limits.maxManifestSize, Number.isFinite(declared) ? declared : undefined);
    const digest = Digest.of(bytes).toString();
    const announced = header(res, 'docker-content-digest');
    const reference = request.reference;
    const expected = expectedManifestDigest(reference.kind === 'digest' ? { kind: 'digest', digest: reference.digest.toString() } : { kind: 'tag' }, announced);
    if (expected && expected !== digest) {
      this.metrics.digestMismatches.inc();
      this.logger.error(`upstream ${upstream.id} sent ${path} with digest ${digest}, expected ${expected}: not cached`);
      throw new OciError(OciErrorCode.UNAVAILABLE, 'upstream content does not match its digest', { status: 502 });
    }
    const contentType = resolveManifestMediaType(header(res, 'content-type'), bytes);
    if (!contentType) throw new OciError(OciErrorCode.MANIFEST_INVALID, 'upstream sent something that is not a manifest', { status: 502 });

    const writer = await this.blobs.create();
    try {
      await writer.append(bytes);
      await writer.commit(digest, bytes.length);
    } catch (err) {
      await writer.cancel();
      throw err;
    }
    const record = { upstreamId: upstream.id, digest, size: bytes.length, contentType, upstreamEtag: header(res, 'etag') ?? null };
    // A tag's manifest is also recorded under its by-digest path: what clients ask next (and what a child of an
    // index is pulled by). The two rows are independent: recorded at once, one commit's wait instead of two.
    const paths = request.reference.kind === 'tag' ? [path, relativePath(request.name, 'manifest', digest)] : [path];
    const [entryId] = await Promise.all(paths.map((p) => this.cacheEntries.record(null, { ...record, relativePath: p }, { skipPermissionCheck: true })));
    this.quota.enforceSoon(upstream.groupId); // never refuses the pull: evicts least-recently-downloaded entries
    this.layerOrder.noteManifest(upstream.id, request.name, bytes);
    return { bytes, digest, contentType, entryId };
  }

  // ---------------------------------------------------------------- bookkeeping

  /** An entry whose object is gone or cut short: marked for destruction (the caller then asks the upstream). */
  private async objectLost(entry: CacheEntry): Promise<undefined> {
    await this.lookup.markForDestruction(entry.id);
    this.logger.error(`cache entry ${entry.id} (${entry.relativePath}) has no stored object; marked for destruction, asking the upstream`);
    return undefined;
  }

  private countHit(result: 'hit' | 'stale' | 'revalidated', kind: 'manifest' | 'blob'): void {
    this.metrics.cacheRequests.inc({ result, kind });
    if (result === 'stale') this.logger.warn(`serving a stale ${kind}: the upstream is unavailable`);
  }

  private countUpstreamFailure(kind: string): void {
    this.metrics.upstreamErrors.inc({ kind });
  }

  private upstreamFailed(upstream: PullUpstream, path: string, err: unknown): UpstreamError {
    const failure = err instanceof UpstreamError ? err : classifyUpstreamError(err, upstream.id);
    this.countUpstreamFailure(failure.kind);
    this.logger.warn(`upstream ${upstream.id} failed for ${path}: ${failure.message}`);
    return failure;
  }
}

/**
 * What we ask upstreams for on a miss: the client's types plus every manifest type, so an upstream never
 * down-converts (Distribution turns schema2 into signed schema1 for old clients) and the cached bytes
 * (served to every client, byte-for-byte, digests unchanged) are the upstream's own.
 */
function manifestAccept(accept: string | undefined): string {
  if (!accept) return DEFAULT_MANIFEST_ACCEPT;
  const types = accept
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  for (const t of DEFAULT_MANIFEST_ACCEPT.split(',').map((x) => x.trim())) if (!types.some((x) => x.startsWith(t))) types.push(t);
  return types.join(', ');
}

function isUnavailable(err: unknown): boolean {
  return err instanceof UpstreamError || (OciError.is(err, OciErrorCode.UNAVAILABLE) && err.status >= 502);
}
