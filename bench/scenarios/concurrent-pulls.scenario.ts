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

export const CONCURRENT_CLIENTS = 8;

export function declareConcurrentRows(ctx: BenchContext, image: BenchImage): void {
  const what = `${CONCURRENT_CLIENTS} concurrent cold pulls of ${formatSize(image.blobBytes)}`;
  ctx.rows.declare('concurrent-wall', `${what}, wall time`, 's');
  ctx.rows.declare('concurrent-upstream-bytes', `${what}, upstream blob bytes / image blob bytes`, 'x');
  ctx.rows.declare('concurrent-max-gets', `${what}, upstream GETs of the most-fetched blob`, 'GETs');
}

export async function measureConcurrentPulls(ctx: BenchContext, image: BenchImage, round: number): Promise<void> {
  declareConcurrentRows(ctx, image);
  const blobDigests = new Set(image.digests);
  for (const system of rotated(ctx.systems, round)) {
    await system.freshCache();
    const mark = await ctx.upstream.mark();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENT_CLIENTS }, () => skopeoPull(system, image.name, image.tag, ctx.workDir, { all: image.all, signal: ctx.signal })),
    );
    const seconds = (performance.now() - started) / 1000;
    await system.settle(image.digests, 120_000);
    const downloads = accessLog.blobDownloads(await ctx.upstream.requests(mark)).filter((e) => e.reference && blobDigests.has(e.reference));
    const bytes = downloads.reduce((sum, e) => sum + e.bytes, 0);
    const perBlob = new Map<string, number>();
    for (const e of downloads) perBlob.set(e.reference!, (perBlob.get(e.reference!) ?? 0) + 1);
    const maxGets = Math.max(0, ...perBlob.values());
    ctx.rows.record('concurrent-wall', system.id, round, seconds);
    ctx.rows.record('concurrent-upstream-bytes', system.id, round, bytes / image.blobBytes);
    ctx.rows.record('concurrent-max-gets', system.id, round, maxGets);
    ctx.progress(
      `round ${round + 1} ${CONCURRENT_CLIENTS} concurrent cold pulls ${system.id}: ${seconds.toFixed(2)} s, upstream ${(bytes / image.blobBytes).toFixed(2)} x image, max ${maxGets} GETs per blob`,
    );
  }
}
