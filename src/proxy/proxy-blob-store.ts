import type { Readable } from 'node:stream';
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { CacheEntryCreateOrUpdateService } from '../cache-entries/cache-entry-create-or-update.service.js';
import { CacheEntryLookupService } from '../cache-entries/cache-entry-lookup.service.js';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { JobName, QUEUE_DRIVER, type QueueDriver, type QueuedJob } from '../jobs/queue-driver.js';
import { StorageQuotaService } from '../lifecycle/storage-quota.service.js';
import type { Tally } from '../observability/counter-tallies.js';
import { MetricsService } from '../observability/metrics.service.js';
import { OciError, OciErrorCode, contentRange, parseRange, parseRelativePath, relativePathOf, type BlobRequest } from '../oci/index.js';
import { BLOB_STORE, BlobNotFoundError, DigestMismatchError, type BlobStore, type BlobWriter } from '../storage/blob-store.js';
import { UpstreamClient, type UpstreamResponse } from '../upstreams/client/upstream-client.js';
import { UpstreamError, classifyUpstreamError } from '../upstreams/client/upstream-error.js';
import { isCacheableBlob, upstreamAnswer } from './cache-policy.js';
import { InflightBlobFills, readFill, type BlobFill, type FillStart } from './blob-fills.js';
import { BlobOffload } from './blob-offload.js';
import { LayerReadAhead } from './layer-read-ahead.js';
import { RecentBlobEntries } from './recent-blob-entries.js';
import { FILL_LOCK, newFillHolder, type FillHolder, type FillLease, type FillLock } from './fill-lock.js';
import { FILL_OUTCOME_HEADER, FillPeers, type PeerFillOutcome } from './fill-peers.js';
import {
  BLOB_CONTENT_TYPE,
  blobHeaders,
  blobResponse,
  discard,
  header,
  notFoundOrUnavailable,
  statusError,
  totalSizeOf,
  unsatisfiable,
  verifiedBlobBody,
} from './pull-responses.js';
import { pullScopeOf, type PullTarget, type PullUpstream } from '../upstreams/pull-target.js';
import type { PullResponse } from './pull-response.js';
import { UpstreamsService } from '../upstreams/upstreams.service.js';
import { ByteLimit, ByteSkip } from './withheld-tail.js';

export type PullMethod = 'GET' | 'HEAD';

/** Blobs one process fills ahead of its clients at once (LayerReadAhead); more wait for a client to ask. */
const READ_AHEAD_FILLS = 4;
/**
 * A successor this small is read ahead as soon as a client asks for the blob before it: its download is
 * round trips more than bytes (a client asks for it moments after the one before). A larger one waits
 * until that blob is all there (see readAheadAfter).
 */
const READ_AHEAD_AT_ONCE_BYTES = 4 * 1024 * 1024;

type BlobResult = 'hit' | 'miss' | 'coalesced' | 'pass-through';

/** The data of a background fill job (FILL_CACHE_ENTRY). */
export interface FillJobData {
  upstreamId: number;
  relativePath: string;
}

/** How this process's request for one blob of one upstream began (FillStart), plus the leader's own answer. */
interface Led {
  start: FillStart;
  /** `uncacheable`: the upstream's answer, streamed through by the request that asked for it. */
  response?: UpstreamResponse;
}

/**
 * Blobs of the pull path (distribution's proxyblobstore, done better): digest-addressed, so a stored
 * blob is served with no upstream contact; a miss asks the registry's upstreams in position order, and
 * the first one that has it streams to the client while the same bytes are written to the store and
 * verified before the entry becomes live.
 *
 * Concurrent misses for one blob of one upstream make one upstream download, whatever the mix of
 * replicas: within a process InflightBlobFills coalesces them; across processes the fill lease in Redis
 * names the replica that downloads, and followers on the other replicas stream its growing object over
 * its fill route (`peerAnswer`), verifying the bytes again as they pass. A holder that cannot be reached
 * (it died) is taken over; a holder without an HTTP listener (the worker) is streamed around.
 */
@Injectable()
export class ProxyBlobStore implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger(ProxyBlobStore.name);
  private readonly fills = new InflightBlobFills();
  /** The counters of every blob request, bound once (MetricsService.tally). */
  private readonly counted: Record<BlobResult, Tally>;
  private readonly servedFromCache: Tally;
  /** Layers being read ahead (at most READ_AHEAD_FILLS), and whether shutdown has begun (none then). */
  private readingAhead = 0;
  private closing = false;

  constructor(
    private readonly lookup: CacheEntryLookupService,
    private readonly cacheEntries: CacheEntryCreateOrUpdateService,
    private readonly targets: UpstreamsService,
    private readonly upstreams: UpstreamClient,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    private readonly metrics: MetricsService,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    @Inject(FILL_LOCK) private readonly fillLock: FillLock,
    private readonly quota: StorageQuotaService,
    private readonly peers: FillPeers,
    private readonly offload: BlobOffload,
    private readonly recentBlobs: RecentBlobEntries,
    private readonly layerOrder: LayerReadAhead,
  ) {
    const counted = (result: BlobResult) => metrics.tally(metrics.cacheRequests, { result, kind: 'blob' });
    this.counted = { hit: counted('hit'), miss: counted('miss'), coalesced: counted('coalesced'), 'pass-through': counted('pass-through') };
    this.servedFromCache = metrics.tally(metrics.bytesServed, { source: 'cache' });
  }

  onModuleInit(): void {
    this.queue.registerHandler<FillJobData>(JobName.FILL_CACHE_ENTRY, (job) => this.runFillJob(job));
  }

  /** Graceful shutdown: fills in progress finish (or fail) before pools close; none is read ahead from now on. */
  async beforeApplicationShutdown(): Promise<void> {
    this.closing = true;
    await this.fills.drain();
  }

  /** While the fills drain: which (a shutdown that takes long names them, see src/shutdown-progress.ts). */
  describeShutdown(): string | undefined {
    return this.fills.describe();
  }

  async blob(target: PullTarget, request: BlobRequest, method: PullMethod, rangeHeader?: string): Promise<PullResponse> {
    if (!request.digest.isSupported) {
      throw new OciError(OciErrorCode.DIGEST_INVALID, `unsupported digest algorithm ${request.digest.algorithm}`);
    }
    const path = relativePathOf(request);
    const digest = request.digest.toString();
    const ids = target.upstreams.map((u) => u.id);

    // A blob served moments ago by this replica needs no database read (RecentBlobEntries).
    const scope = pullScopeOf(target);
    const remembered = this.recentBlobs.get(scope, path);
    const generation = this.recentBlobs.generation;
    const entry = remembered ?? (await this.lookup.findLive(ids, path))[0];
    if (entry) {
      const served = await this.serveStored(entry, method, rangeHeader);
      if (served) {
        if (!remembered) this.recentBlobs.remember(scope, path, entry, generation);
        if (method === 'GET' && !rangeHeader) this.readAheadAfter(target.upstreams, entry.upstreamId, path, undefined);
        return served;
      }
      this.recentBlobs.forget(scope, path);
    }
    const running = this.runningFill(ids, path);
    if (running) {
      this.count('coalesced');
      if (method === 'GET' && !rangeHeader) this.readAheadAfter(target.upstreams, running.upstreamId, path, running.done);
      return this.followFill(running, method, rangeHeader);
    }
    if (method === 'HEAD') {
      this.count('miss');
      return this.headUpstreams(target, path, digest);
    }
    if (rangeHeader) {
      this.count('miss');
      return this.fetchRange(target, path, digest, rangeHeader);
    }
    return this.fetch(target, path, digest);
  }

  /**
   * A blob this replica served moments ago (RecentBlobEntries) with the answer `blob()` gives it, for the
   * HTTP edge's early answer: no database read, the stored object's bytes. Undefined at once when it is not
   * remembered; the promise settles undefined when its object vanished meanwhile (the entry is handed to
   * the destroy job, as by `blob()`), and the full path takes the request as a miss.
   */
  rememberedBlob(target: PullTarget, request: BlobRequest, method: PullMethod, rangeHeader?: string): Promise<PullResponse | undefined> | undefined {
    if (!request.digest.isSupported) return undefined;
    const scope = pullScopeOf(target);
    const path = relativePathOf(request);
    const entry = this.recentBlobs.get(scope, path, false);
    if (!entry) return undefined;
    return this.serveStored(entry, method, rangeHeader).then((served) => {
      if (served) this.recentBlobs.countHit();
      else this.recentBlobs.forget(scope, path);
      return served;
    });
  }

  /** A cache hit; undefined when the row's object has vanished (the row is handed to the destroy job). */
  private async serveStored(entry: CacheEntry, method: PullMethod, rangeHeader?: string): Promise<PullResponse | undefined> {
    const range = parseRange(rangeHeader, entry.size);
    if (range === 'unsatisfiable') return unsatisfiable(entry.size);
    let body: Readable | undefined;
    if (method === 'GET') {
      try {
        const offloaded = await this.offload.answer(entry, range); // nginx or the object store sends the bytes
        if (offloaded) {
          this.count('hit');
          this.lookup.recordDownload(entry.id);
          return offloaded;
        }
        body = await this.blobs.createReadStream(entry.storageKey, range);
      } catch (err) {
        if (err instanceof BlobNotFoundError) {
          await this.lookup.markForDestruction(entry.id);
          return undefined;
        }
        throw err;
      }
      this.servedFromCache.inc(range ? range.end - range.start + 1 : entry.size);
    }
    this.count('hit');
    this.lookup.recordDownload(entry.id);
    return blobResponse(entry.digest, entry.size, range, body);
  }

  /** A fill of this process for `path` from one of `upstreamIds`, in position order. */
  private runningFill(upstreamIds: readonly number[], path: string): BlobFill | undefined {
    for (const id of upstreamIds) {
      const fill = this.fills.running(InflightBlobFills.key(id, path));
      if (fill) return fill;
    }
    return undefined;
  }

  private followFill(fill: BlobFill, method: PullMethod, rangeHeader?: string): PullResponse {
    const range = parseRange(rangeHeader, fill.size);
    if (range === 'unsatisfiable') return unsatisfiable(fill.size);
    const { start, end } = range ?? { start: 0, end: fill.size - 1 };
    const body = method === 'GET' ? readFill(fill, start, end) : undefined;
    if (body) this.metrics.bytesServed.inc({ source: 'upstream' }, end - start + 1);
    return blobResponse(fill.digest, fill.size, range, body);
  }

  // ---------------------------------------------------------------- misses

  /** A GET miss of a whole blob: the upstreams in position order, each asked at most once by all replicas together. */
  private async fetch(target: PullTarget, path: string, digest: string): Promise<PullResponse> {
    const failures: UpstreamError[] = [];
    for (const upstream of target.upstreams) {
      const served = await this.fetchFrom(upstream, path, digest, failures);
      if (served) return served;
    }
    throw notFoundOrUnavailable(OciErrorCode.BLOB_UNKNOWN, failures);
  }

  /** One upstream's turn: the blob's response, or undefined when this upstream does not have it (failures noted). */
  private async fetchFrom(upstream: PullUpstream, path: string, digest: string, failures: UpstreamError[]): Promise<PullResponse | undefined> {
    const key = InflightBlobFills.key(upstream.id, path);
    // A second turn only after the holder of the lease turned out dead or done.
    for (let turn = 1; turn <= 2; turn++) {
      const pending = this.fills.find(key);
      let start: FillStart;
      if (pending) {
        start = await pending;
        if (start.kind === 'fill') {
          this.count('coalesced');
          this.readAheadAfter([upstream], upstream.id, path, start.fill.done);
          return this.followFill(start.fill, 'GET');
        }
      } else {
        const led = await this.lead(upstream, path, digest, key);
        start = led.start;
        if (start.kind === 'fill') {
          this.count('miss');
          this.readAheadAfter([upstream], upstream.id, path, start.fill.done);
          return this.followFill(start.fill, 'GET');
        }
        if (led.response) return this.passThrough(digest, led.response);
      }
      switch (start.kind) {
        case 'stored': {
          const served = await this.serveStored(start.entry, 'GET');
          if (!served) continue; // its object vanished (the entry is marked for destruction): ask again
          this.readAheadAfter([upstream], upstream.id, path, undefined);
          return served;
        }
        case 'not-here':
          return undefined;
        case 'failed':
          failures.push(start.error);
          return undefined;
        case 'uncacheable':
          return this.passThroughFrom(upstream, path, digest, failures);
        case 'remote': {
          const followed = await this.followRemote(upstream, key, path, digest, start.holder, failures);
          if (followed !== 'again') return followed;
        }
      }
    }
    return this.passThroughFrom(upstream, path, digest, failures);
  }

  /**
   * This process asks the upstream for the blob on behalf of every request for it: it opens the key (so
   * requests of this process wait for it), claims the lease (so other replicas follow it), asks the
   * upstream and starts the fill. Settles the key whatever happens.
   */
  private async lead(upstream: PullUpstream, path: string, digest: string, key: string, signal?: AbortSignal): Promise<Led> {
    const holder = newFillHolder(this.peers.selfUrl());
    const pending = this.fills.open(key, holder.token);
    try {
      const led = await this.claimAndStart(upstream, path, digest, key, holder, signal);
      pending.settle(led.start);
      return led;
    } catch (err) {
      pending.settle({ kind: 'failed', error: classifyUpstreamError(err, upstream.id) });
      throw err;
    }
  }

  private async claimAndStart(upstream: PullUpstream, path: string, digest: string, key: string, holder: FillHolder, signal?: AbortSignal): Promise<Led> {
    const claim = await this.fillLock.claim(key, holder);
    if ('heldBy' in claim) return { start: { kind: 'remote', holder: claim.heldBy } };
    const { lease } = claim;
    // Whoever waits for this start must not wait for Redis as well: releases are not awaited.
    // A fill commits its entry before it lets go of its lease: one that ended since our lookup is seen here.
    const [stored] = await this.lookup.findLive([upstream.id], path);
    if (stored) {
      void lease.release();
      return { start: { kind: 'stored', entry: stored } };
    }
    // The fill's spool file is created while the upstream answers; an answer that starts no fill removes it.
    const creating = this.blobs.create();
    creating.catch(() => undefined); // startFill reports a failure to create; nothing else waits for it
    const noFill = async () => {
      void lease.release();
      await creating.then((writer) => writer.cancel()).catch(() => undefined);
    };
    let res: UpstreamResponse;
    try {
      res = await this.upstreams.get(upstream.descriptor, path, { signal });
    } catch (err) {
      await noFill();
      return { start: { kind: 'failed', error: this.upstreamFailed(upstream, path, err) } };
    }
    res.body.on('error', () => undefined); // until a consumer attaches its own handlers
    const answer = upstreamAnswer(res.status);
    if (answer !== 'found') {
      discard(res);
      await noFill();
      if (answer === 'not-here') return { start: { kind: 'not-here' } };
      return { start: { kind: 'failed', error: this.upstreamFailed(upstream, path, statusError(res.status, upstream.id)) } };
    }
    const size = declaredLength(res);
    if (!isCacheableBlob(size, this.limits.maxCachedFileSize)) {
      await noFill();
      return { start: { kind: 'uncacheable' }, response: res };
    }
    return { start: { kind: 'fill', fill: await this.startFill(upstream, path, digest, size, res, lease, creating) } };
  }

  /** Another replica holds the lease: stream its fill. 'again' when it is gone or dead (take another turn). */
  private async followRemote(
    upstream: PullUpstream,
    key: string,
    path: string,
    digest: string,
    holder: FillHolder,
    failures: UpstreamError[],
  ): Promise<PullResponse | undefined | 'again'> {
    if (!holder.peerUrl) {
      // The holder has no HTTP listener (a worker's fill job): stream from the upstream, without a second cache write.
      return this.passThroughFrom(upstream, path, digest, failures);
    }
    const answer = await this.peers.follow({ ...holder, peerUrl: holder.peerUrl }, digest);
    switch (answer.kind) {
      case 'streaming':
        this.count('coalesced');
        this.metrics.bytesServed.inc({ source: 'upstream' }, answer.size);
        return blobResponse(digest, answer.size, undefined, this.verified(answer.body, digest, answer.size));
      case 'not-here':
        return undefined;
      case 'failed':
        failures.push(new UpstreamError('status', 'the replica filling this blob could not get it from the upstream', upstream.id));
        return undefined;
      case 'uncacheable':
        return this.passThroughFrom(upstream, path, digest, failures);
      case 'stalled':
        this.logger.warn(
          `the replica at ${holder.peerUrl} holding the fill of ${path} did not answer in time (${answer.error.message}); streaming from the upstream`,
        );
        return this.passThroughFrom(upstream, path, digest, failures);
      case 'gone': {
        // The fill ended between the claim and our request: cached by now, unless it failed.
        const [entry] = await this.lookup.findLive([upstream.id], path);
        const served = entry && (await this.serveStored(entry, 'GET'));
        return served || 'again';
      }
      case 'unreachable':
        this.logger.warn(`the replica at ${holder.peerUrl} holding the fill of ${path} does not answer (${answer.error.message}); taking over`);
        await this.fillLock.takeOver(key, holder);
        return 'again';
    }
  }

  /** The blob straight from one upstream, verified as it passes, not cached (an uncacheable blob, or a holder we cannot follow). */
  private async passThroughFrom(upstream: PullUpstream, path: string, digest: string, failures: UpstreamError[]): Promise<PullResponse | undefined> {
    let res: UpstreamResponse;
    try {
      res = await this.upstreams.get(upstream.descriptor, path);
    } catch (err) {
      failures.push(this.upstreamFailed(upstream, path, err));
      return undefined;
    }
    const answer = upstreamAnswer(res.status);
    if (answer === 'found') return this.passThrough(digest, res);
    discard(res);
    if (answer === 'failed') failures.push(this.upstreamFailed(upstream, path, statusError(res.status, upstream.id)));
    return undefined;
  }

  private passThrough(digest: string, res: UpstreamResponse): PullResponse {
    this.count('pass-through');
    const declared = Number(header(res, 'content-length'));
    const size = Number.isSafeInteger(declared) ? declared : undefined;
    if (size !== undefined) this.metrics.bytesServed.inc({ source: 'upstream' }, size);
    return blobResponse(digest, size, undefined, this.verified(res.body, digest, size));
  }

  private verified(body: Readable, digest: string, size: number | undefined): Readable {
    return verifiedBlobBody(body, digest, size, () => this.metrics.digestMismatches.inc());
  }

  /** HEAD on an uncached blob: the first upstream that has it answers; the blob is cached by a job. */
  private async headUpstreams(target: PullTarget, path: string, digest: string): Promise<PullResponse> {
    const failures: unknown[] = [];
    for (const upstream of target.upstreams) {
      try {
        const res = await this.upstreams.head(upstream.descriptor, path);
        const answer = upstreamAnswer(res.status);
        if (answer === 'found') {
          await this.enqueueFillSoon(upstream.id, path);
          return blobResponse(digest, declaredLength(res), undefined, undefined);
        }
        if (answer === 'failed') failures.push(this.upstreamFailed(upstream, path, statusError(res.status, upstream.id)));
      } catch (err) {
        failures.push(this.upstreamFailed(upstream, path, err));
      }
    }
    throw notFoundOrUnavailable(OciErrorCode.BLOB_UNKNOWN, failures);
  }

  /** A ranged miss: the range is forwarded upstream and passed through; the whole blob is cached by a job. */
  private async fetchRange(target: PullTarget, path: string, digest: string, rangeHeader: string): Promise<PullResponse> {
    const failures: unknown[] = [];
    for (const upstream of target.upstreams) {
      let res: UpstreamResponse;
      try {
        res = await this.upstreams.get(upstream.descriptor, path, { range: rangeHeader });
      } catch (err) {
        failures.push(this.upstreamFailed(upstream, path, err));
        continue;
      }
      if (res.status === 416) {
        discard(res);
        return unsatisfiable(totalSizeOf(res) ?? 0);
      }
      const answer = upstreamAnswer(res.status);
      if (answer !== 'found') {
        discard(res);
        if (answer === 'failed') failures.push(this.upstreamFailed(upstream, path, statusError(res.status, upstream.id)));
        continue;
      }
      await this.enqueueFillSoon(upstream.id, path);
      return this.rangeOf(digest, res, rangeHeader);
    }
    throw notFoundOrUnavailable(OciErrorCode.BLOB_UNKNOWN, failures);
  }

  private rangeOf(digest: string, res: UpstreamResponse, rangeHeader: string): PullResponse {
    const body = res.body;
    body.on('error', () => undefined); // forwarded below where it matters; never unhandled
    if (res.status === 206) {
      const total = totalSizeOf(res);
      const match = /bytes (\d+)-(\d+)\//.exec(header(res, 'content-range') ?? '');
      const headers = blobHeaders(digest);
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
    if (!range) return this.passThrough(digest, res);
    const sliced = body.pipe(new ByteSkip(range.start)).pipe(new ByteLimit(range.end - range.start + 1, () => body.destroy()));
    body.on('error', (err) => sliced.destroy(err));
    return blobResponse(digest, size, range, sliced);
  }

  // ---------------------------------------------------------------- fills

  /**
   * Starts the one download of a blob into the cache. The fill runs to its end whether or not clients
   * stay (client streams read the growing object).
   */
  private async startFill(
    upstream: PullUpstream,
    path: string,
    digest: string,
    size: number,
    res: UpstreamResponse,
    lease: FillLease,
    creating: Promise<BlobWriter>,
  ): Promise<BlobFill> {
    let writer;
    try {
      writer = await creating;
    } catch (err) {
      discard(res);
      await lease.release();
      throw err;
    }
    this.metrics.inflightFills.inc();
    const done = (async () => {
      try {
        await res.body.deliverTo(writer.sink); // each socket chunk straight to the batches: no stream pair in between
        const committed = await writer.commit(digest, size);
        await this.cacheEntries.record(
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
    return { key: InflightBlobFills.key(upstream.id, path), upstreamId: upstream.id, digest, size, contentType: BLOB_CONTENT_TYPE, writer, done };
  }

  // ---------------------------------------------------------------- reading ahead

  /**
   * A client's GET of `path` from `upstreamId`: the next blob of the manifest that upstream served lately
   * is filled, unless it is stored or filling already (LayerReadAhead says why). A small one at once; a
   * larger one once `path`'s bytes are all there (`complete`, its fill's end; undefined: stored): its
   * download takes CPU and bandwidth the client still uses for `path` until then, and the client's own
   * sync of `path` leaves both idle afterwards. Nothing waits for it; a failure is only logged.
   */
  private readAheadAfter(upstreams: readonly PullUpstream[], upstreamId: number, path: string, complete: Promise<unknown> | undefined): void {
    if (this.closing || !this.layerOrder.enabled) return;
    const next = this.layerOrder.takeSuccessor(upstreamId, path);
    if (!next) return;
    const upstream = upstreams.find((u) => u.id === upstreamId);
    if (!upstream) return;
    const start = () => {
      this.fillAhead(upstream, next.path).catch((err: Error) =>
        this.logger.warn(`reading ${next.path} ahead from upstream ${upstream.id} failed: ${err.message}`),
      );
    };
    if (complete && next.size > READ_AHEAD_AT_ONCE_BYTES) complete.then(start, () => undefined);
    else start();
  }

  private async fillAhead(upstream: PullUpstream, path: string): Promise<void> {
    const parsed = parseRelativePath(path);
    const key = InflightBlobFills.key(upstream.id, path);
    if (parsed.kind !== 'blob' || this.closing || this.readingAhead >= READ_AHEAD_FILLS || this.fills.find(key)) {
      this.metrics.blobReadAheads.inc({ outcome: 'skipped' });
      return;
    }
    this.readingAhead++;
    let outcome: 'filled' | 'skipped' = 'skipped';
    try {
      if ((await this.lookup.findLive([upstream.id], path)).length > 0 || this.fills.find(key)) return;
      const { start, response } = await this.lead(upstream, path, parsed.digest.toString(), key);
      if (response) discard(response); // too large to cache: a client streams it through when it asks
      if (start.kind !== 'fill') return;
      outcome = 'filled';
      await start.fill.done.catch(() => undefined); // the fill logs and retries its own failure
    } finally {
      this.readingAhead--;
      this.metrics.blobReadAheads.inc({ outcome });
    }
  }

  async enqueueFill(upstreamId: number, path: string): Promise<void> {
    const data: FillJobData = { upstreamId, relativePath: path };
    await this.queue.add(JobName.FILL_CACHE_ENTRY, data, { jobId: fillJobId(upstreamId, path), attempts: 5, backoffMs: 2000 });
  }

  /** The fill job a HEAD or a range asks for: the answer to the client never depends on the queue. */
  private async enqueueFillSoon(upstreamId: number, path: string): Promise<void> {
    await this.enqueueFill(upstreamId, path).catch((err: Error) => this.logger.warn(`could not queue the fill of ${path}: ${err.message}`));
  }

  /** FILL_CACHE_ENTRY: download one blob of one upstream into the cache (no client attached). */
  private async runFillJob(job: QueuedJob<FillJobData>): Promise<void> {
    const { upstreamId, relativePath: path } = job.data;
    const parsed = parseRelativePath(path);
    if (parsed.kind !== 'blob') return;
    if ((await this.lookup.findLive([upstreamId], path)).length > 0) return;
    const key = InflightBlobFills.key(upstreamId, path);
    // A request of this process opened the key (before, or while the upstream was looked up): its fill is ours.
    const upstream = this.fills.find(key) ? undefined : await this.targets.pullUpstreamOf(upstreamId);
    const opened = this.fills.find(key);
    if (opened) {
      const start = await opened;
      if (start.kind === 'fill') return start.fill.done;
      if (start.kind === 'stored') return;
      throw new Error(`the fill of ${path} this process started ended as ${start.kind}; retrying later`);
    }
    if (!upstream) return; // deleted meanwhile
    const { start, response } = await this.lead(upstream, path, parsed.digest.toString(), key, job.signal);
    switch (start.kind) {
      case 'fill':
        return start.fill.done;
      case 'stored':
        return; // cached meanwhile
      case 'not-here':
        return; // gone upstream: nothing to cache
      case 'uncacheable':
        if (response) discard(response);
        return;
      case 'remote':
        throw new Error(`another process is filling ${path}; retrying later`);
      case 'failed':
        throw start.error;
    }
  }

  /**
   * The fill route of this replica (FILL_ROUTE_PREFIX + lease token): another replica that lost the
   * claim streams the growing object from here. Answers with an outcome header when there is nothing to stream.
   */
  async peerAnswer(token: string): Promise<PullResponse> {
    const pending = this.fills.byToken(token);
    const start = pending && (await pending);
    if (start?.kind !== 'fill') return peerOutcome(start ? outcomeOf(start) : 'gone');
    const { fill } = start;
    return {
      status: 200,
      headers: { 'content-type': BLOB_CONTENT_TYPE, 'content-length': String(fill.size), 'docker-content-digest': fill.digest },
      body: readFill(fill, 0, fill.size - 1),
    };
  }

  private count(result: BlobResult): void {
    this.counted[result].inc();
  }

  private upstreamFailed(upstream: PullUpstream, path: string, err: unknown): UpstreamError {
    const failure = err instanceof UpstreamError ? err : classifyUpstreamError(err, upstream.id);
    this.metrics.upstreamErrors.inc({ kind: failure.kind });
    this.logger.warn(`upstream ${upstream.id} failed for ${path}: ${failure.message}`);
    return failure;
  }
}

function outcomeOf(start: Exclude<FillStart, { kind: 'fill' }>): PeerFillOutcome {
  // A process that does not hold the lease itself never announces its token, so 'remote' cannot be asked for;
  // 'stored' is cached: the follower finds it with its own lookup.
  return start.kind === 'remote' || start.kind === 'stored' ? 'gone' : start.kind;
}

function peerOutcome(outcome: PeerFillOutcome): PullResponse {
  return { status: 404, headers: { [FILL_OUTCOME_HEADER]: outcome, 'content-length': '0' }, body: Buffer.alloc(0) };
}

/** The Content-Length an upstream declared, when it is a usable number. */
function declaredLength(res: UpstreamResponse): number | undefined {
  const length = Number(header(res, 'content-length'));
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

function fillJobId(upstreamId: number, path: string): string {
  // BullMQ ids may not contain ':'; a path is at most ~400 characters.
  return `fill-${upstreamId}-${path.replace(/:/g, '-').replace(/\//g, '_')}`;
}
