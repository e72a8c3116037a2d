/**
 * Warm blob GET throughput: the big image's first layer (40 MiB in the full run), already cached by every
 * system, fetched sequentially on one keep-alive connection; MB/s against the upstream in the same round.
 */
import type { BenchContext } from '../bench-context.js';
import { formatSize, type BenchImage } from '../bench-images.js';
import { blobGetRate, blobGetTool } from '../clients/blob-get.js';
import { registryUrl } from '../systems/pull-system.js';
import { rotated } from '../statistics.js';

/** GETs per measurement, the same for every system (the offload scenario's rows share this row). */
export function blobGetCount(ctx: Pick<BenchContext, 'smoke'>): number {
  return ctx.smoke ? 3 : 10;
}

export async function measureBlobThroughput(ctx: BenchContext, image: BenchImage, round: number): Promise<void> {
  if (image.fixture.kind !== 'manifest') throw new Error('blob throughput needs an image manifest');
  const layer = image.fixture.layers[0];
  const count = blobGetCount(ctx);
  ctx.rows.declare('blob-get', `warm ${formatSize(layer.size)} blob GET, ${count} sequential (${blobGetTool()})`, 'MB/s');
  for (const system of rotated(ctx.systems, round)) {
    const authorization = await system.authorization(image.name);
    const mbPerSecond = await blobGetRate(registryUrl(system, image.name, `blobs/${layer.digest}`), authorization ? { authorization } : {}, layer.size, count);
    ctx.rows.record('blob-get', system.id, round, mbPerSecond);
    ctx.progress(`round ${round + 1} warm blob GET ${system.id}: ${Math.round(mbPerSecond)} MB/s`);
  }
}
