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
  type ReferrersRequest,
  type TagsRequest,
} from '../oci/index.js';
import { BLOB_STORE, BlobNotFoundError, type BlobStore } from '../storage/blob-store.js';
import type { UpstreamResponse } from '../upstreams/client/upstream-client.js';
import { UpstreamClient } from '../upstreams/client/upstream-client.js';
import { UpstreamError, classifyUpstreamError } from '../upstreams/client/upstream-error.js';
import { readManifestBody } from '../oci/manifest-body.js';
import type { PullMethod } from './proxy-blob-store.js';
import { API_VERSION, NOT_HERE, discard, header, manifestResponse, notFoundOrUnavailable, statusError } from './pull-responses.js';
import type { PullTarget, PullUpstream } from '../upstreams/pull-target.js';
import type { PullResponse } from './pull-response.js';
import { RecentManifests, type RecentManifest, type RememberAs } from './recent-manifests.js';

/** The response headers of each remembered manifest, built once (they never change for that manifest). */
const recentHeaders = new WeakMap<RecentManifest, Record<string, string>>();

interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  contentType: string;
  entryId?: number;
}

type Revalidation = 'unchanged' | 'changed' | 'unavailable';

/**
 * The pull path, top-down (SPEC section 3, "Cache decision"); blobs are ProxyBlobStore's:
 * 1. digest-addressed content is served from the cache with no upstream contact;
 * 2. a tag is served from the cache within its upstream's validity window, then revalidated by HEAD;
 * 3. a miss walks the registry's upstreams in position order (401/403/404 -> next, first 2xx wins);
 * 4. an upstream that is down, slow, 5xx or 429 while a cached copy exists -> the stale copy is served;
 * 5. concurrent misses for one blob share one upstream download: followers read the growing object;
 * 6. bytes are verified against their digest before an entry becomes live, and a mismatch fails the
 *    client's stream instead of completing it with wrong bytes;
 * 7. storage dedupes bytes, never access: content reaches a registry only through a verified GET from one of
 *    its own upstreams (the commit then reuses an object already stored instead of writing it twice).
 */
@Injectable()
export class PullService {
  private readonly logger = new Logger(PullService.name);
  private readonly manifestFetches = new Map<string, Promise<FetchedManifest>>();

  constructor(
    private readonly lookup: CacheEntryLookupService,
    private readonly cacheEntries: CacheEntryCreateOrUpdateService,
    private readonly upstreams: UpstreamClient,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    private readonly metrics: MetricsService,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    private readonly quota: StorageQuotaService,
    private readonly recentManifests: RecentManifests,
  ) {}

  // ---------------------------------------------------------------- manifests

  async manifest(target: PullTarget, request: ManifestRequest, method: PullMethod, accept?: string): Promise<PullResponse> {
    if (request.reference.kind === 'digest' && !request.reference.digest.isSupported) {
      throw new OciError(OciErrorCode.DIGEST_INVALID, `unsupported digest algorithm ${request.reference.digest.algorithm}`);
    }
    const path = relativePathOf(request);
    const recent = this.recentManifests.get(target.registryId, path);
    if (recent) return this.serveRecentManifest(recent, method);
    const generation = this.recentManifests.generation;
    const [entry] = await this.lookup.findLive(upstreamIds(target), path);
    if (entry) {
      const upstream = target.upstreams.find((u) => u.id === entry.upstreamId)!;
      const remember = { registryId: target.registryId, relativePath: path, generation };
      if (request.reference.kind === 'digest') {
        return this.serveCachedManifest(entry, method, 'hit', { ...remember, freshUntil: Infinity });
      }
      if (isFresh(entry, upstream)) {
        return this.serveCachedManifest(entry, method, 'hit', { ...remember, freshUntil: freshUntil(entry.upstreamCheckedAt, upstream) });
      }
      const verdict = await this.revalidateTag(upstream, path, entry, accept);
      if (verdict === 'unchanged') {
        const checkedAt = new Date();
        await this.lookup.markChecked(entry.id, checkedAt);
        return this.serveCachedManifest(entry, method, 'revalidated', { ...remember, freshUntil: freshUntil(checkedAt, upstream) });
      }
      if (verdict === 'unavailable') return this.serveCachedManifest(entry, method, 'stale');
    }
    try {
      const fetched = await this.fetchManifestCoalesced(target, request, path, accept);
      this.metrics.cacheRequests.inc({ result: 'miss', kind: 'manifest' });
      if (fetched.entryId !== undefined) this.lookup.recordDownload(fetched.entryId);
      return manifestResponse(fetched.digest, fetched.contentType, fetched.bytes.length, method === 'GET' ? fetched.bytes : undefined);
    } catch (err) {
      if (entry && isUnavailable(err)) return this.serveCachedManifest(entry, method, 'stale');
      throw err;
    }
  }

  /**
   * A cached manifest from storage. With `remember` (a hit or a successful revalidation, on GET), a small
   * manifest is read whole, verified and kept in memory for the next pulls (RecentManifests).
   */
  private async serveCachedManifest(
    entry: CacheEntry,
    method: PullMethod,
    result: 'hit' | 'stale' | 'revalidated',
    remember?: RememberAs,
  ): Promise<PullResponse> {
    let body: Readable | Buffer | undefined;
    if (method === 'GET') {
      try {
        body = await this.blobs.createReadStream(entry.storageKey);
        if (remember && this.recentManifests.wants(entry.size)) {
          const bytes = await readManifestBody(body as Readable, entry.size, entry.size);
          if (bytes.length !== entry.size) return this.objectLost(entry);
          this.recentManifests.remember(remember, { entryId: entry.id, digest: entry.digest, contentType: entry.contentType, bytes });
          body = bytes;
        }
      } catch (err) {
        if (err instanceof BlobNotFoundError) return this.objectLost(entry);
        if (OciError.is(err, OciErrorCode.MANIFEST_INVALID)) return this.objectLost(entry);
        throw err;
      }
    }
    this.countHit(result, 'manifest');
    this.lookup.recordDownload(entry.id);
    if (body) this.metrics.bytesServed.inc({ source: 'cache' }, entry.size);
    return manifestResponse(entry.digest, entry.contentType, entry.size, body);
  }

  /** A manifest this replica served moments ago (RecentManifests): no database, no storage. */
  private serveRecentManifest(recent: RecentManifest, method: PullMethod): PullResponse {
    this.countHit('hit', 'manifest');
    this.lookup.recordDownload(recent.entryId);
    if (method === 'GET') this.metrics.bytesServed.inc({ source: 'cache' }, recent.bytes.length);
    let headers = recentHeaders.get(recent);
    if (!headers) {
      headers = manifestResponse(recent.digest, recent.contentType, recent.bytes.length, undefined).headers;
      recentHeaders.set(recent, headers);
    }
    return { status: 200, headers, body: method === 'GET' ? recent.bytes : undefined };
  }

  /** HEAD the tag on the upstream the entry came from and compare digests (ETag when no digest is sent). */
  private async revalidateTag(upstream: PullUpstream, path: string, entry: CacheEntry, accept?: string): Promise<Revalidation> {
    try {
      const res = await this.upstreams.head(upstream.descriptor, path, { accept: manifestAccept(accept) });
      if (res.status >= 200 && res.status < 300) {
        const digest = header(res, 'docker-content-digest');
        if (digest) return digest === entry.digest ? 'unchanged' : 'changed';
        const etag = header(res, 'etag');
        return etag && entry.upstreamEtag && etag === entry.upstreamEtag ? 'unchanged' : 'changed';
      }
      if (NOT_HERE.has(res.status)) return 'changed';
      this.countUpstreamFailure('status');
      return 'unavailable';
    } catch (err) {
      this.countUpstreamFailure(classifyUpstreamError(err, upstream.id).kind);
      this.logger.warn(`revalidating ${path} on upstream ${upstream.id} failed: ${(err as Error).message}`);
      return 'unavailable';
    }
  }

  private fetchManifestCoalesced(target: PullTarget, request: ManifestRequest, path: string, accept?: string): Promise<FetchedManifest> {
    const key = `${target.registryId} ${path}`;
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
      if (NOT_HERE.has(res.status)) {
        discard(res);
        continue;
      }
      if (res.status < 200 || res.status >= 300) {
        discard(res);
        failures.push(this.upstreamFailed(upstream, path, statusError(res.status, upstream.id)));
        continue;
      }
      return this.storeManifest(upstream, request, path, res);
    }
    throw notFoundOrUnavailable(OciErrorCode.MANIFEST_UNKNOWN, failures);
  }

  private async storeManifest(upstream: PullUpstream, request: ManifestRequest, path: string, res: UpstreamResponse): Promise<FetchedManifest> {
    const declared = Number(header(res, 'content-length'));
    const bytes = await readManifestBody(res.body, this.limits.maxManifestSize, Number.isFinite(declared) ? declared : undefined);
    const digest = Digest.of(bytes).toString();
    const announced = header(res, 'docker-content-digest');
    const expected = request.reference.kind === 'digest' ? request.reference.digest.toString() : announced?.startsWith('sha256:') ? announced : undefined;
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
    const entry = await this.cacheEntries.execute(null, { ...record, relativePath: path }, { skipPermissionCheck: true });
    if (request.reference.kind === 'tag') {
      // The by-digest path is what clients ask next (and what a child of an index is pulled by).
      await this.cacheEntries.execute(null, { ...record, relativePath: relativePath(request.name, 'manifest', digest) }, { skipPermissionCheck: true });
    }
    this.quota.enforceSoon(upstream.groupId); // never refuses the pull: evicts least-recently-downloaded entries
    return { bytes, digest, contentType, entryId: entry.id };
  }

  // ---------------------------------------------------------------- tags and referrers (pass-through)

  /** tags/list: each upstream's list (404s skipped), merged in upstream order without duplicates. */
  async tags(target: PullTarget, request: TagsRequest, query: { n?: number; last?: string }): Promise<PullResponse> {
    const failures: unknown[] = [];
    const seen = new Set<string>();
    const tags: string[] = [];
    let found = false;
    for (const upstream of target.upstreams) {
      try {
        const res = await this.upstreams.tagsList(upstream.descriptor, request.name.value);
        if (res.status >= 200 && res.status < 300) {
          const body = JSON.parse((await readManifestBody(res.body, this.limits.maxManifestSize)).toString('utf8')) as { tags?: unknown };
          found = true;
          for (const tag of Array.isArray(body.tags) ? body.tags : []) {
            if (typeof tag === 'string' && !seen.has(tag)) {
              seen.add(tag);
              tags.push(tag);
            }
          }
        } else {
          discard(res);
          if (!NOT_HERE.has(res.status)) failures.push(this.upstreamFailed(upstream, request.name.value, statusError(res.status)));
        }
      } catch (err) {
        failures.push(OciError.is(err) ? err : this.upstreamFailed(upstream, request.name.value, err));
      }
    }
    if (!found) throw notFoundOrUnavailable(OciErrorCode.NAME_UNKNOWN, failures);
    let page = query.last !== undefined ? tags.filter((t) => t > query.last!) : tags;
    if (query.last !== undefined) page = page.sort();
    if (query.n !== undefined) page = page.slice(0, query.n);
    const body = Buffer.from(JSON.stringify({ name: request.name.value, tags: page }));
    return { status: 200, headers: { ...API_VERSION, 'content-type': 'application/json', 'content-length': String(body.length) }, body };
  }

  /** referrers: the first upstream that supports the API answers; an empty index otherwise (OCI 1.1). */
  async referrers(target: PullTarget, request: ReferrersRequest, artifactType?: string): Promise<PullResponse> {
    const path = relativePathOf(request) + (artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '');
    for (const upstream of target.upstreams) {
      try {
        const res = await this.upstreams.get(upstream.descriptor, path, { accept: 'application/vnd.oci.image.index.v1+json' });
        if (res.status >= 200 && res.status < 300) {
          const bytes = await readManifestBody(res.body, this.limits.maxManifestSize);
          const headers: Record<string, string> = {
            ...API_VERSION,
            'content-type': 'application/vnd.oci.image.index.v1+json',
            'content-length': String(bytes.length),
          };
          const filtered = header(res, 'oci-filters-applied');
          if (filtered) headers['oci-filters-applied'] = filtered;
          return { status: 200, headers, body: bytes };
        }
        discard(res);
      } catch (err) {
        this.upstreamFailed(upstream, path, err);
      }
    }
    const empty = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }));
    return {
      status: 200,
      headers: { ...API_VERSION, 'content-type': 'application/vnd.oci.image.index.v1+json', 'content-length': String(empty.length) },
      body: empty,
    };
  }

  // ---------------------------------------------------------------- bookkeeping

  private async objectLost(entry: CacheEntry): Promise<never> {
    await this.lookup.markForDestruction(entry.id);
    this.logger.error(`cache entry ${entry.id} (${entry.relativePath}) has no stored object; marked for destruction`);
    throw new OciError(OciErrorCode.UNAVAILABLE, 'cached content is missing, retry the pull', { status: 503 });
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
  const types = accept.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of DEFAULT_MANIFEST_ACCEPT.split(',').map((x) => x.trim())) if (!types.some((x) => x.startsWith(t))) types.push(t);
  return types.join(', ');
}

function upstreamIds(target: PullTarget): number[] {
  return target.upstreams.map((u) => u.id);
}

function isFresh(entry: CacheEntry, upstream: PullUpstream): boolean {
  return freshUntil(entry.upstreamCheckedAt, upstream) > Date.now();
}

/** When a tag checked at `checkedAt` needs asking the upstream again (validity 0: never). */
function freshUntil(checkedAt: Date, upstream: PullUpstream): number {
  if (upstream.cacheValidityHours === 0) return Infinity;
  return checkedAt.getTime() + upstream.cacheValidityHours * 3_600_000;
}

function isUnavailable(err: unknown): boolean {
  return err instanceof UpstreamError || (OciError.is(err, OciErrorCode.UNAVAILABLE) && err.status >= 502);
}
