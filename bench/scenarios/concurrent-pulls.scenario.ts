/**
 * 8 clients pull the same cold image at once (8 skopeo processes). Wall time until the last one is done,
 * against 8 concurrent direct pulls in the same round; and what reached the upstream, from its access
 * log: blob bytes sent / the image's blob bytes, and the GET count of the most-fetched blob. The app's
 * background work is included: the log is read after the app has committed every entry.
 */
import { accessLog } from '../../test/support/access-log.js';
import type { BenchContext } from '../bench-context.js';
import { formatSize, type BenchImage } from '../bench-images.js';
import { skopeoPull } from '../clients/skopeo-pull.js';
import { rotated } from '../statistics.js';
import type { PullSystem } from '../systems/pull-system.js';

export const CONCURRENT_CLIENTS = 8;

export function declareConcurrentRows(ctx: BenchContext, image: BenchImage): void {
  const what = `${CONCURRENT_CLIENTS} concurrent cold pulls of ${formatSize(image.blobBytes)}`;
  ctx.rows.declare('concurrent-wall', `${what}, wall time`, 's');
  ctx.rows.declare('concurrent-upstream-bytes', `${what}, upstream blob bytes / image blob bytes`, 'x');
  ctx.rows.declare('concurrent-max-gets', `${what}, upstream GETs of the most-fetched blob`, 'GETs');
}

export async function measureConcurrentPulls(ctx: BenchContext, image: BenchImage, round: number): Promise<void> {
  declareConcurrentRows(ctx, image);
  for (const system of rotated(ctx.systems, round)) {
    await system.freshCache();
    const { seconds, upstreamRatio, maxGets } = await pullConcurrently(ctx, image, () => system);
    ctx.rows.record('concurrent-wall', system.id, round, seconds);
    ctx.rows.record('concurrent-upstream-bytes', system.id, round, upstreamRatio);
    ctx.rows.record('concurrent-max-gets', system.id, round, maxGets);
    ctx.progress(
      `round ${round + 1} ${CONCURRENT_CLIENTS} concurrent cold pulls ${system.id}: ${seconds.toFixed(2)} s, upstream ${upstreamRatio.toFixed(2)} x image, max ${maxGets} GETs per blob`,
    );
  }
}

export interface ConcurrentPullResult {
  /** Wall time until the last client is done. */
  seconds: number;
  /** Upstream blob bytes of the image's blobs / the image's blob bytes. */
  upstreamRatio: number;
  /** Upstream GETs of the most-fetched blob. */
  maxGets: number;
}

/**
 * CONCURRENT_CLIENTS skopeo pulls of `image` at once, client i (1-based) through `systemFor(i)`, then the
 * first client's system settles (the cache entries are committed) and the upstream's access log since the
 * start is read.
 */
export async function pullConcurrently(ctx: BenchContext, image: BenchImage, systemFor: (client: number) => PullSystem): Promise<ConcurrentPullResult> {
  const blobDigests = new Set(image.digests);
  const mark = await ctx.upstream.mark();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENT_CLIENTS }, (_, i) =>
      skopeoPull(systemFor(i + 1), image.name, image.tag, ctx.workDir, { all: image.all, signal: ctx.signal }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  await systemFor(1).settle(image.digests, 120_000);
  const downloads = accessLog.blobDownloads(await ctx.upstream.requests(mark)).filter((e) => e.reference && blobDigests.has(e.reference));
  const bytes = downloads.reduce((sum, e) => sum + e.bytes, 0);
  const perBlob = new Map<string, number>();
  for (const e of downloads) perBlob.set(e.reference!, (perBlob.get(e.reference!) ?? 0) + 1);
  return { seconds, upstreamRatio: bytes / image.blobBytes, maxGets: Math.max(0, ...perBlob.values()) };
}
