import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { CacheEntryCreateOrUpdateService } from '../cache-entries/cache-entry-create-or-update.service.js';
import { CacheEntryLookupService } from '../cache-entries/cache-entry-lookup.service.js';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { StorageQuotaService } from '../lifecycle/storage-quota.service.js';
import { JobName, QUEUE_DRIVER, type QueueDriver, type QueuedJob } from '../jobs/queue-driver.js';
import { MetricsService } from '../observability/metrics.service.js';
import {
  DEFAULT_MANIFEST_ACCEPT,
  Digest,
  DigestVerifier,
  OciError,
  OciErrorCode,
  contentRange,
  parseRange,
  parseRelativePath,
  relativePath,
  relativePathOf,
  resolveManifestMediaType,
  unsatisfiedContentRange,
  type BlobRequest,
  type ByteRange,
  type ManifestRequest,
  type ReferrersRequest,
  type TagsRequest,
} from '../oci/index.js';
import { BLOB_STORE, BlobNotFoundError, DigestMismatchError, type BlobStore } from '../storage/blob-store.js';
import type { UpstreamResponse } from '../upstreams/client/upstream-client.js';
import { UpstreamClient } from '../upstreams/client/upstream-client.js';
import { UpstreamError, classifyUpstreamError } from '../upstreams/client/upstream-error.js';
import { InflightBlobFills, readFill, type BlobFill } from './blob-fills.js';
import { FILL_LOCK, type FillLease, type FillLock } from './fill-lock.js';
import { readManifestBody } from '../oci/manifest-body.js';
import type { PullResponse, PullTarget, PullUpstream } from './pull-target.js';
import { PullTargetResolver } from './pull-target.resolver.js';
import { RecentManifests, type RecentManifest, type RememberAs } from './recent-manifests.js';
import { ByteLimit, ByteSkip, WithheldTail } from './withheld-tail.js';

/** The response headers of each remembered manifest, built once (they never change for that manifest). */
const recentHeaders = new WeakMap<RecentManifest, Record<string, string>>();
const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };
const BLOB_CONTENT_TYPE = 'application/octet-stream';
/** Upstream answers that mean "not here, ask the next upstream". */
const NOT_HERE = new Set([401, 403, 404]);

export type PullMethod = 'GET' | 'HEAD';

/** The data of a background fill job (FILL_CACHE_ENTRY). */
export interface FillJobData {
  upstreamId: number;
  relativePath: string;
}

interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  contentType: string;
  entryId?: number;
}

type Revalidation = 'unchanged' | 'changed' | 'unavailable';

/**
 * The pull path, top-down (SPEC section 3, "Cache decision"):
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
export class PullService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger(PullService.name);
  private readonly fills = new InflightBlobFills();
  private readonly manifestFetches = new Map<string, Promise<FetchedManifest>>();
  /** Blob misses between the cache lookup and the start of their fill, by registry and path. */
  private readonly blobMisses = new Map<string, Promise<BlobFill | undefined>>();

  constructor(
    private readonly lookup: CacheEntryLookupService,
    private readonly cacheEntries: CacheEntryCreateOrUpdateService,
    private readonly targets: PullTargetResolver,
    private readonly upstreams: UpstreamClient,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    private readonly metrics: MetricsService,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    @Inject(FILL_LOCK) private readonly fillLock: FillLock,
    private readonly quota: StorageQuotaService,
    private readonly recentManifests: RecentManifests,
  ) {}

  onModuleInit(): void {
    this.queue.registerHandler<FillJobData>(JobName.FILL_CACHE_ENTRY, (job) => this.runFillJob(job));
  }

  /** Graceful shutdown: fills in progress finish (or fail) before pools close. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.fills.drain();
  }

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

  // ---------------------------------------------------------------- blobs

  async blob(target: PullTarget, request: BlobRequest, method: PullMethod, rangeHeader?: string): Promise<PullResponse> {
    const path = relativePathOf(request);
    const digest = request.digest.toString();
    if (!request.digest.isSupported) {
      throw new OciError(OciErrorCode.DIGEST_INVALID, `unsupported digest algorithm ${request.digest.algorithm}`);
    }
    const ids = upstreamIds(target);

    const [entry] = await this.lookup.findLive(ids, path);
    if (entry) {
      const served = await this.serveCachedBlob(entry, method, rangeHeader);
      if (served) return served;
    }

    const fill = this.fills.find(ids, path);
    if (fill) return this.followFill(fill, method, rangeHeader);

    // Concurrent misses for one blob: the first becomes the leader, the others wait for its fill to
    // start (upstream headers) and then follow it; nobody asks the upstream a second time.
    const key = `${target.registryId} ${path}`;
    const leader = this.blobMisses.get(key);
    if (leader && method === 'GET') {
      const leaderFill = await leader;
      if (leaderFill) return this.followFill(leaderFill, method, rangeHeader);
      const [cached] = await this.lookup.findLive(ids, path);
      const served = cached && (await this.serveCachedBlob(cached, method, rangeHeader));
      if (served) return served;
    }
    if (method !== 'GET' || rangeHeader || this.blobMisses.has(key)) return this.missBlob(target, path, digest, method, rangeHeader);
    let announce!: (fill: BlobFill | undefined) => void;
    const started = new Promise<BlobFill | undefined>((resolve) => (announce = resolve));
    this.blobMisses.set(key, started);
    try {
      return await this.missBlob(target, path, digest, method, rangeHeader, announce);
    } finally {
      announce(undefined);
      this.blobMisses.delete(key);
    }
  }

  /** A blob nobody in this process is fetching yet: the upstreams in order. */
  private async missBlob(
    target: PullTarget,
    path: string,
    digest: string,
    method: PullMethod,
    rangeHeader?: string,
    announce?: (fill: BlobFill) => void,
  ): Promise<PullResponse> {
    this.metrics.cacheRequests.inc({ result: 'miss', kind: 'blob' });
    if (method === 'HEAD') return this.headBlobUpstream(target, path, digest);
    return this.fetchBlob(target, path, digest, rangeHeader, announce);
  }

  /** A cache hit; undefined when the row's object has vanished (the row is handed to the destroy job). */
  private async serveCachedBlob(entry: CacheEntry, method: PullMethod, rangeHeader?: string): Promise<PullResponse | undefined> {
    const range = parseRange(rangeHeader, entry.size);
    if (range === 'unsatisfiable') return unsatisfiable(entry.size);
    let body: Readable | undefined;
    if (method === 'GET') {
      try {
        body = await this.blobs.createReadStream(entry.storageKey, range);
      } catch (err) {
        if (err instanceof BlobNotFoundError) {
          await this.lookup.markForDestruction(entry.id);
          return undefined;
        }
        throw err;
      }
      this.metrics.bytesServed.inc({ source: 'cache' }, range ? range.end - range.start + 1 : entry.size);
    }
    this.countHit('hit', 'blob');
    this.lookup.recordDownload(entry.id);
    return blobResponse(entry.digest, entry.size, range, body);
  }

  private followFill(fill: BlobFill, method: PullMethod, rangeHeader?: string): PullResponse {
    const range = parseRange(rangeHeader, fill.size);
    if (range === 'unsatisfiable') return unsatisfiable(fill.size);
    this.metrics.cacheRequests.inc({ result: 'coalesced', kind: 'blob' });
    const { start, end } = range ?? { start: 0, end: fill.size - 1 };
    const body = method === 'GET' ? readFill(fill, start, end) : undefined;
    if (body) this.metrics.bytesServed.inc({ source: 'upstream' }, end - start + 1);
    return blobResponse(fill.digest, fill.size, range, body);
  }

  /** HEAD on an uncached blob: the first upstream that has it answers; the blob is cached by a job. */
  private async headBlobUpstream(target: PullTarget, path: string, digest: string): Promise<PullResponse> {
    const failures: unknown[] = [];
    for (const upstream of target.upstreams) {
      try {
        const res = await this.upstreams.head(upstream.descriptor, path);
        if (res.status >= 200 && res.status < 300) {
          const size = Number(header(res, 'content-length'));
          await this.enqueueFill(upstream.id, path);
          return blobResponse(digest, Number.isFinite(size) ? size : undefined, undefined, undefined);
        }
        if (!NOT_HERE.has(res.status)) failures.push(this.upstreamFailed(upstream, path, statusError(res.status)));
      } catch (err) {
        failures.push(this.upstreamFailed(upstream, path, err));
      }
    }
    throw notFoundOrUnavailable(OciErrorCode.BLOB_UNKNOWN, failures);
  }

  /** A blob miss by GET: the first upstream that has it streams to the client and, at the same time, into the cache. */
  private async fetchBlob(
    target: PullTarget,
    path: string,
    digest: string,
    rangeHeader?: string,
    announce?: (fill: BlobFill) => void,
  ): Promise<PullResponse> {
    const failures: unknown[] = [];
    for (const upstream of target.upstreams) {
      let res: UpstreamResponse;
      try {
        res = await this.upstreams.get(upstream.descriptor, path, rangeHeader ? { range: rangeHeader } : {});
      } catch (err) {
        failures.push(this.upstreamFailed(upstream, path, err));
        continue;
      }
      if (NOT_HERE.has(res.status) || res.status === 416) {
        discard(res);
        if (res.status === 416) return unsatisfiable(totalSizeOf(res) ?? 0);
        continue;
      }
      if (res.status < 200 || res.status >= 300) {
        discard(res);
        failures.push(this.upstreamFailed(upstream, path, statusError(res.status)));
        continue;
      }
      if (rangeHeader) return this.passThroughRange(upstream, path, digest, res, rangeHeader);
      const size = Number(header(res, 'content-length'));
      if (Number.isFinite(size) && size <= this.limits.maxCachedFileSize) {
        const lease = await this.fillLock.acquire(InflightBlobFills.key(upstream.id, path));
        if (lease) {
          const fill = await this.startFill(upstream, path, digest, size, res, lease);
          announce?.(fill);
          return this.followFill(fill, 'GET');
        }
        // Another replica is filling this blob: stream it through without a second cache write.
        this.metrics.cacheRequests.inc({ result: 'pass-through', kind: 'blob' });
      }
      return this.passThroughVerified(digest, Number.isFinite(size) ? size : undefined, res);
    }
    throw notFoundOrUnavailable(OciErrorCode.BLOB_UNKNOWN, failures);
  }

  /** Too large to cache (or no length): streamed through, verified, the last bytes held until verified. */
  private passThroughVerified(digest: string, size: number | undefined, res: UpstreamResponse): PullResponse {
    const verifier = new DigestVerifier({ expected: digest, expectedSize: size });
    const withheld = new WithheldTail();
    const body = res.body;
    body.on('error', (err) => verifier.destroy(err));
    verifier.on('error', (err) => {
      if (OciError.is(err)) this.metrics.digestMismatches.inc();
      withheld.destroy(err);
      body.destroy();
    });
    withheld.on('close', () => body.destroy());
    body.pipe(verifier).pipe(withheld);
    if (size !== undefined) this.metrics.bytesServed.inc({ source: 'upstream' }, size);
    return blobResponse(digest, size, undefined, withheld);
  }

  /** A ranged miss: the range is forwarded upstream and passed through; the whole blob is cached by a job. */
  private async passThroughRange(upstream: PullUpstream, path: string, digest: string, res: UpstreamResponse, rangeHeader: string): Promise<PullResponse> {
    await this.enqueueFill(upstream.id, path);
    const body = res.body;
    body.on('error', () => undefined); // forwarded below where it matters; never unhandled
    if (res.status === 206) {
      const total = totalSizeOf(res);
      const match = /bytes (\d+)-(\d+)\//.exec(header(res, 'content-range') ?? '');
      const headers: Record<string, string> = {
        ...API_VERSION,
        'content-type': BLOB_CONTENT_TYPE,
        'docker-content-digest': digest,
        'accept-ranges': 'bytes',
        etag: `"${digest}"`,
      };
      const length = header(res, 'content-length');
      if (length) headers['content-length'] = length;
      if (match && total !== undefined) headers['content-range'] = contentRange(Number(match[1]), Number(match[2]), total);
      return { status: 206, headers, body };
    }
    // The upstream ignored the Range header and sent everything: cut the range out ourselves.
    const size = Number(header(res, 'content-length'));
    const range = Number.isFinite(size) ? parseRange(rangeHeader, size) : undefined;
    if (range === 'unsatisfiable') {
      body.destroy();
      return unsatisfiable(size);
    }
    if (!range) return this.passThroughVerified(digest, Number.isFinite(size) ? size : undefined, res);
    const sliced = body.pipe(new ByteSkip(range.start)).pipe(new ByteLimit(range.end - range.start + 1, () => body.destroy()));
    body.on('error', (err) => sliced.destroy(err));
    return blobResponse(digest, size, range, sliced);
  }

  /**
   * Starts the one download of a blob into the cache, registered so concurrent misses follow it.
   * The fill runs to its end whether or not clients stay (client streams read the growing object).
   */
  private async startFill(
    upstream: PullUpstream,
    path: string,
    digest: string,
    size: number,
    res: UpstreamResponse,
    lease: FillLease,
  ): Promise<BlobFill> {
    let writer;
    try {
      writer = await this.blobs.create();
    } catch (err) {
      discard(res);
      await lease.release();
      throw err;
    }
    const key = InflightBlobFills.key(upstream.id, path);
    this.metrics.inflightFills.inc();
    const done = (async () => {
      try {
        await pipeline(res.body, writer.stream);
        const committed = await writer.commit(digest, size);
        await this.cacheEntries.execute(
          null,
          { upstreamId: upstream.id, relativePath: path, digest: committed.digest, size: committed.size, contentType: BLOB_CONTENT_TYPE, upstreamEtag: null },
          { skipPermissionCheck: true },
        );
        this.quota.enforceSoon(upstream.groupId); // never refuses the pull: evicts least-recently-downloaded entries
      } catch (err) {
        await writer.cancel();
        if (err instanceof DigestMismatchError) {
          this.metrics.digestMismatches.inc();
          this.logger.error(`upstream ${upstream.id} sent ${path} with ${err.message}: not cached`);
        } else {
          this.logger.warn(`filling ${path} from upstream ${upstream.id} failed: ${(err as Error).message}; retrying in the background`);
          await this.enqueueFill(upstream.id, path).catch(() => undefined);
        }
        throw err;
      } finally {
        this.metrics.inflightFills.dec();
        await lease.release();
      }
    })();
    done.catch(() => undefined); // observed by followers and the job; never an unhandled rejection
    const fill: BlobFill = { key, upstreamId: upstream.id, digest, size, contentType: BLOB_CONTENT_TYPE, writer, done };
    this.fills.track(fill);
    return fill;
  }

  private async enqueueFill(upstreamId: number, path: string): Promise<void> {
    const data: FillJobData = { upstreamId, relativePath: path };
    await this.queue.add(JobName.FILL_CACHE_ENTRY, data, { jobId: fillJobId(upstreamId, path), attempts: 5, backoffMs: 2000 });
  }

  /** FILL_CACHE_ENTRY: download one blob of one upstream into the cache (no client attached). */
  private async runFillJob(job: QueuedJob<FillJobData>): Promise<void> {
    const { upstreamId, relativePath: path } = job.data;
    const parsed = parseRelativePath(path);
    if (parsed.kind !== 'blob') return;
    const digest = parsed.digest.toString();
    if ((await this.lookup.findLive([upstreamId], path)).length > 0) return;
    const inflight = this.fills.find([upstreamId], path);
    if (inflight) return inflight.done;
    const upstream = await this.targets.upstream(upstreamId);
    if (!upstream) return; // deleted meanwhile
    const res = await this.upstreams.get(upstream.descriptor, path, { signal: job.signal });
    if (res.status < 200 || res.status >= 300) {
      discard(res);
      if (NOT_HERE.has(res.status)) return; // gone upstream: nothing to cache
      throw statusError(res.status);
    }
    const size = Number(header(res, 'content-length'));
    if (!Number.isFinite(size) || size > this.limits.maxCachedFileSize) {
      discard(res);
      return;
    }
    const lease = await this.fillLock.acquire(InflightBlobFills.key(upstream.id, path));
    if (!lease) {
      discard(res);
      throw new Error(`another process is filling ${path}; retrying later`);
    }
    const fill = await this.startFill(upstream, path, digest, size, res, lease);
    await fill.done;
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

/** Drops an upstream body we do not want: small ones are drained (the connection stays pooled). */
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

function discard(res: UpstreamResponse): void {
  res.body.on('error', () => undefined);
  const length = Number(header(res, 'content-length'));
  if (Number.isFinite(length) && length <= 64 * 1024) res.body.resume();
  else res.body.destroy();
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

function header(res: UpstreamResponse, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function totalSizeOf(res: UpstreamResponse): number | undefined {
  const match = /\/(\d+)$/.exec(header(res, 'content-range') ?? '');
  return match ? Number(match[1]) : undefined;
}

function statusError(status: number, upstreamId?: number): UpstreamError {
  return new UpstreamError('status', `upstream answered ${status}`, upstreamId, status);
}

/**
 * None of the upstreams has it: 404 when all said so, 503 when one of them could not answer. The
 * failures themselves (upstream addresses, token-server answers) are for operators: they are logged
 * with the request id where they happened (upstreamFailed) and never sent to the client.
 */
function notFoundOrUnavailable(code: OciErrorCode, failures: unknown[]): OciError {
  if (failures.length === 0) return new OciError(code);
  const timeouts = failures.every((f) => f instanceof UpstreamError && f.kind === 'timeout');
  return new OciError(OciErrorCode.UNAVAILABLE, 'no upstream could be reached for this content', {
    status: timeouts ? 504 : 503,
  });
}

function fillJobId(upstreamId: number, path: string): string {
  // BullMQ ids may not contain ':'; a path is at most ~400 characters.
  return `fill-${upstreamId}-${path.replace(/:/g, '-').replace(/\//g, '_')}`;
}

function manifestResponse(digest: string, contentType: string, size: number, body: Readable | Buffer | undefined): PullResponse {
  return {
    status: 200,
    headers: {
      ...API_VERSION,
      'content-type': contentType,
      'content-length': String(size),
      'docker-content-digest': digest,
      etag: `"${digest}"`,
    },
    body,
  };
}

function blobResponse(digest: string, size: number | undefined, range: ByteRange | undefined, body: Readable | undefined): PullResponse {
  const headers: Record<string, string> = {
    ...API_VERSION,
    'content-type': BLOB_CONTENT_TYPE,
    'docker-content-digest': digest,
    'accept-ranges': 'bytes',
    etag: `"${digest}"`,
  };
  if (range && size !== undefined) {
    headers['content-length'] = String(range.end - range.start + 1);
    headers['content-range'] = contentRange(range.start, range.end, size);
    return { status: 206, headers, body };
  }
  if (size !== undefined) headers['content-length'] = String(size);
  return { status: 200, headers, body };
}

function unsatisfiable(size: number): PullResponse {
  const body = Buffer.from(JSON.stringify(new OciError(OciErrorCode.BLOB_UNKNOWN, 'requested range not satisfiable', { status: 416 })));
  return {
    status: 416,
    headers: { ...API_VERSION, 'content-range': unsatisfiedContentRange(size), 'content-type': 'application/json', 'content-length': String(body.length) },
    body,
  };
}
