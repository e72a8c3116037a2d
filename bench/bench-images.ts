/**
 * The images of one round, generated deterministically (seeded by round) and pushed to the upstream over
 * the registry API (test/support/image-fixtures.ts). Every round has its own images, so a cold pull is
 * cold for every system: no proxy has stored those bytes before, under any upstream.
 */
import {
  buildImage,
  buildImageIndex,
  imageBlobs,
  pushImage,
  type ImageFixture,
} from '../test/support/image-fixtures.js';
import type { UpstreamRegistry } from '../test/support/upstream-registry.js';

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

/** Builds and pushes round `round`'s images: the same bytes on every run (seeded by image and round). */
export async function pushRoundImages(upstream: UpstreamRegistry, round: number, sizes: ImageSizes): Promise<RoundImages> {
  const tag = `round-${round + 1}`;
  const seed = (what: string) => `bench-${what}-r${round + 1}`;
  const big = await buildImage({ seed: seed('big'), layerSizes: sizes.bigLayers });
  const small = await buildImage({ seed: seed('small'), layerSizes: sizes.smallLayers });
  const index = await buildImageIndex({ seed: seed('multi'), layerSizes: sizes.indexLayers });
  const concurrent = await buildImage({ seed: seed('concurrent'), layerSizes: sizes.bigLayers });
  const images: RoundImages = {
    big: describe('bench/big', tag, big),
    small: describe('bench/small', tag, small),
    index: describe('bench/multi-arch', tag, index),
    concurrent: describe('bench/concurrent', tag, concurrent),
  };
  for (const image of Object.values(images)) await pushImage(upstream.url, image.name, image.tag, image.fixture);
  return images;
}

/** `200 MiB`, `1.3 MiB`, `96 KiB`. */
export function formatSize(bytes: number): string {
  if (bytes >= MiB) {
    const mib = bytes / MiB;
    return `${mib >= 10 ? Math.round(mib) : mib.toFixed(1)} MiB`;
  }
  return `${Math.round(bytes / KiB)} KiB`;
}
