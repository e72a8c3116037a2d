/**
 * The images of one round, generated deterministically (seeded by round) and pushed to the upstream over
 * the registry API (test/support/image-fixtures.ts). Every round has its own images, so a cold pull is
 * cold for every system: no proxy has stored those bytes before, under any upstream.
 */
import { execFile } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildImage, buildImageIndex, imageBlobs, pushImage, type ImageFixture } from '../test/support/image-fixtures.js';
import type { UpstreamRegistry } from '../test/support/upstream-registry.js';

const run = promisify(execFile);

const KiB = 1024;
const MiB = 1024 * KiB;

export interface ImageSizes {
  /** Random-data size of each layer of the big image (the full run: 5 x 40 MiB = 200 MiB). */
  bigLayers: number[];
  smallLayers: number[];
  indexLayers: number[];
}

export const FULL_SIZES: ImageSizes = {
  bigLayers: [40 * MiB, 40 * MiB, 40 * MiB, 40 * MiB, 40 * MiB],
  smallLayers: [256 * KiB, 1 * MiB],
  indexLayers: [24 * KiB, 40 * KiB],
};

export const SMOKE_SIZES: ImageSizes = {
  bigLayers: [256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB],
  smallLayers: [16 * KiB, 32 * KiB],
  indexLayers: [8 * KiB, 12 * KiB],
};

export interface BenchImage {
  /** Repository name on the upstream. */
  name: string;
  tag: string;
  fixture: ImageFixture;
  /** The manifest (or index) digest. */
  digest: string;
  /** Every digest a full pull fetches: the manifest, child manifests, configs and layers. */
  digests: string[];
  /** Bytes of every blob (configs and layers) a full pull fetches. */
  blobBytes: number;
  /** Blob bytes plus manifest bytes. */
  totalBytes: number;
  /** skopeo `--all` for indexes. */
  all: boolean;
}

export interface RoundImages {
  big: BenchImage;
  small: BenchImage;
  index: BenchImage;
  /** A second big image, for the 8 concurrent cold pulls. */
  concurrent: BenchImage;
}

function describe(name: string, tag: string, fixture: ImageFixture): BenchImage {
  const blobs = imageBlobs(fixture);
  const manifests = fixture.kind === 'index' ? [fixture, ...fixture.children] : [fixture];
  const blobBytes = blobs.reduce((sum, b) => sum + b.size, 0);
  const manifestBytes = manifests.reduce((sum, m) => sum + m.manifest.length, 0);
  return {
    name,
    tag,
    fixture,
    digest: fixture.digest,
    digests: [...manifests.map((m) => m.digest), ...blobs.map((b) => b.digest)],
    blobBytes,
    totalBytes: blobBytes + manifestBytes,
    all: fixture.kind === 'index',
  };
}

const roundTag = (round: number) => `round-${round + 1}`;
const roundSeed = (what: string, round: number) => `bench-${what}-r${round + 1}`;

/** Builds and pushes round `round`'s images: the same bytes on every run (seeded by image and round). */
export async function pushRoundImages(upstream: UpstreamRegistry, round: number, sizes: ImageSizes): Promise<RoundImages> {
  const tag = roundTag(round);
  const big = await buildImage({ seed: roundSeed('big', round), layerSizes: sizes.bigLayers });
  const small = await buildImage({ seed: roundSeed('small', round), layerSizes: sizes.smallLayers });
  const index = await buildImageIndex({ seed: roundSeed('multi', round), layerSizes: sizes.indexLayers });
  const concurrent = await buildImage({ seed: roundSeed('concurrent', round), layerSizes: sizes.bigLayers });
  const images: RoundImages = {
    big: describe('bench/big', tag, big),
    small: describe('bench/small', tag, small),
    index: describe('bench/multi-arch', tag, index),
    concurrent: describe('bench/concurrent', tag, concurrent),
  };
  for (const image of Object.values(images)) await pushImage(upstream.url, image.name, image.tag, image.fixture);
  await settleWrites(); // what the pushes left in the page cache is not the first measurement's cost
  return images;
}

/**
 * Builds and pushes `count` more images of the big image's size for round `round` (`bench/<what>-1`, ...):
 * one cold image per measurement of a row that pulls twice into the same storage.
 */
export async function pushBigImages(upstream: UpstreamRegistry, round: number, sizes: ImageSizes, what: string, count: number): Promise<BenchImage[]> {
  const images: BenchImage[] = [];
  for (let i = 1; i <= count; i++) {
    const fixture = await buildImage({ seed: roundSeed(`${what}-${i}`, round), layerSizes: sizes.bigLayers });
    const image = describe(`bench/${what}-${i}`, roundTag(round), fixture);
    await pushImage(upstream.url, image.name, image.tag, image.fixture);
    images.push(image);
  }
  await settleWrites(); // what the pushes left in the page cache is not the first measurement's cost
  return images;
}

/**
 * Writes dirty pages to disk (`sync`), unmeasured. A system that does not fsync what it caches (nginx,
 * Distribution) leaves its writes to the kernel's writeback about 30 s later, which on 2 vCPUs then lands
 * on whatever is measured next; so would the upstream's pushed blobs. In three runs every system's
 * measurements of round 2 were slow together (manifest req/s of the app and nginx 20-30 % under their
 * other rounds; the app's 8 concurrent pulls 8.5-8.8 s against 6.6-6.8 s in its other rounds).
 */
export async function settleWrites(): Promise<void> {
  await run('sync');
}

/**
 * Writes `bytes` of zeros to a scratch file in `dir` and deletes it, unmeasured, so that the page cache the
 * next measurement grows comes from memory just freed, for every system alike. This machine's kernel reports
 * freed memory to the hypervisor (free page reporting), which takes it back after a while; growing the page
 * cache into such memory costs several times the system time (1.6 GB written with dd: 1.9 s of system time
 * after 45 s idle, 0.3 s right after another 1.6 GB was freed). Without this, whichever system came first in
 * a round's rotation paid it: in three full runs the first system of every round's 8-client row (whichever
 * it was) was 5-40 % slower than in its other rounds.
 */
export async function recycleMemory(dir: string, bytes: number): Promise<void> {
  const path = join(dir, `recycle-${process.pid}`);
  const handle = await open(path, 'w');
  try {
    const zeros = Buffer.alloc(MiB);
    for (let written = 0; written < bytes; written += zeros.length) await handle.write(zeros);
  } finally {
    await handle.close();
    await rm(path, { force: true });
  }
}

/** `200 MiB`, `1.3 MiB`, `96 KiB`. */
export function formatSize(bytes: number): string {
  if (bytes >= MiB) {
    const mib = bytes / MiB;
    return `${mib >= 10 ? Math.round(mib) : mib.toFixed(1)} MiB`;
  }
  return `${Math.round(bytes / KiB)} KiB`;
}
