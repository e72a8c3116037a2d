/**
 * Cold blob GETs: each layer of an image nobody pulled before, fetched once in order on one keep-alive
 * connection, right after the system's cache was emptied (freshCache). A client that costs little CPU
 * (curl to /dev/null) isolates what a cache miss costs the system, which the cold pull rows mix with
 * skopeo's own work (it hashes and writes every layer, one layer at a time). Two rows: MB/s over the
 * layers, and the median time to the first byte of the answer (the miss's lookups, lease and upstream
 * request; the body's first bytes follow).
 */
import type { BenchContext } from '../bench-context.js';
import { formatSize, recycleMemory, settleWrites, type BenchImage } from '../bench-images.js';
import { blobGetTool, timedBlobGets } from '../clients/blob-get.js';
import { registryUrl } from '../systems/pull-system.js';
import { median, rotated } from '../statistics.js';

export async function measureColdBlobGets(ctx: BenchContext, image: BenchImage, round: number): Promise<void> {
  if (image.fixture.kind !== 'manifest') throw new Error('cold blob GETs need an image manifest');
  const layers = image.fixture.layers;
  const size = formatSize(layers[0].size);
  ctx.rows.declare('cold-blob-get', `cold ${size} blob GET, each of ${layers.length} new layers once (${blobGetTool()})`, 'MB/s');
  ctx.rows.declare('cold-blob-first-byte', `cold ${size} blob GET, time to the answer's first byte (median of ${layers.length})`, 'ms');
  const bytes = layers.reduce((sum, layer) => sum + layer.size, 0);
  for (const system of rotated(ctx.systems, round)) {
    await system.freshCache();
    await recycleMemory(ctx.workDir, image.totalBytes); // the cache it fills grows into memory just freed
    await settleWrites(); // the previous system's cache writes are not this one's cost
    const authorization = await system.authorization(image.name);
    const urls = layers.map((layer) => registryUrl(system, image.name, `blobs/${layer.digest}`));
    const transfers = await timedBlobGets(
      urls,
      authorization ? { authorization } : {},
      layers.map((layer) => layer.size),
    );
    const seconds = transfers.reduce((sum, t) => sum + t.totalSeconds, 0);
    const firstByteMs = median(transfers.map((t) => t.firstByteSeconds * 1000));
    ctx.rows.record('cold-blob-get', system.id, round, bytes / seconds / 1e6);
    ctx.rows.record('cold-blob-first-byte', system.id, round, firstByteMs);
    ctx.progress(`round ${round + 1} cold blob GETs ${system.id}: ${Math.round(bytes / seconds / 1e6)} MB/s, first byte ${firstByteMs.toFixed(1)} ms`);
  }
}
