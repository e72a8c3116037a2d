/**
 * The data-plane offload systems (issue 13), each round: a fresh cache and a cold pull of the big image
 * (which fills it), then the warm blob GET of the blob-throughput row (its first layer, sequential GETs on
 * keep-alive connections; the presigned system's GETs follow the 307 to the store), then a warm skopeo pull
 * with the CPU time of the processes that serve it: the app + its nginx (x-accel), the app + s3rver
 * (presigned), per GiB of blob bytes pulled.
 */
import type { BenchContext } from '../bench-context.js';
import { formatSize, type BenchImage } from '../bench-images.js';
import { blobGetRate, blobGetTool } from '../clients/blob-get.js';
import { blobGetCount } from './blob-throughput.scenario.js';
import { redirectedBlobGetRate } from '../clients/blob-get-redirected.js';
import { skopeoPull } from '../clients/skopeo-pull.js';
import { imageBlobs } from '../../test/support/image-fixtures.js';
import { rotated } from '../statistics.js';
import type { OffloadAppSystem } from '../systems/offload.system.js';
import { registryUrl } from '../systems/pull-system.js';

const GiB = 1024 ** 3;

export async function measureOffload(ctx: BenchContext, systems: readonly OffloadAppSystem[], image: BenchImage, round: number): Promise<void> {
  if (image.fixture.kind !== 'manifest') throw new Error('the offload rows need an image manifest');
  const layer = image.fixture.layers[0];
  // The same row as blob-throughput's (same title and count), so the offload systems sit beside the others.
  const count = blobGetCount(ctx);
  ctx.rows.declare('blob-get', `warm ${formatSize(layer.size)} blob GET, ${count} sequential (${blobGetTool()})`, 'MB/s');
  const counted = systems.map((s) => `${s.id}: ${s.cpuCounted}`).join('; ');
  ctx.rows.declare(
    'offload-warm-pull-cpu',
    `CPU per GiB of a warm ${formatSize(imageBytes(image))} pull, offload systems`,
    'CPU s/GiB',
    `counted: ${counted}; skopeo not counted`,
  );
  for (const system of rotated([...systems], round)) {
    await system.freshCache();
    await skopeoPull(system, image.name, image.tag, ctx.workDir, { signal: ctx.signal });
    await system.settle(image.digests, 120_000);

    const authorization = await system.authorization(image.name);
    const url = registryUrl(system, image.name, `blobs/${layer.digest}`);
    const rate = system.id === 'app-presigned' ? redirectedBlobGetRate : blobGetRate;
    const mbPerSecond = await rate(url, { authorization }, layer.size, count);
    ctx.rows.record('blob-get', system.id, round, mbPerSecond);

    const before = system.cpuSeconds();
    await skopeoPull(system, image.name, image.tag, ctx.workDir, { signal: ctx.signal });
    const cpuPerGiB = (system.cpuSeconds() - before) / (imageBytes(image) / GiB);
    ctx.rows.record('offload-warm-pull-cpu', system.id, round, cpuPerGiB);
    ctx.progress(
      `round ${round + 1} ${system.id}: warm blob GET ${Math.round(mbPerSecond)} MB/s, warm pull ${cpuPerGiB.toFixed(3)} CPU s/GiB (${system.cpuCounted})`,
    );
  }
}

/** Blob bytes of one pull of the image (config and layers; manifests are a few KiB). */
function imageBytes(image: BenchImage): number {
  return imageBlobs(image.fixture).reduce((sum, blob) => sum + blob.size, 0);
}
