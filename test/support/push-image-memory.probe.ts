/**
 * Probe (see child-probe.ts): builds the large OCI fixture (buildOciImage: a 100 MiB layer), pushes it to
 * a registry without credentials, and reports the peak RSS growth of this process during the push: the
 * fixture streams its layers, never holding one whole.
 *
 *   node dist/test/support/push-image-memory.probe.js <registry URL> <repository> <tag>
 */
import { reportProbeResult, trackRss } from './child-probe.js';
import { buildOciImage, pushImage } from './image-fixtures.js';

export interface PushImageMemoryReport {
  /** The pushed manifest's digest, and its large layer. */
  digest: string;
  largeLayer: { digest: string; size: number };
  /** Peak RSS above the level when the push started, in bytes. */
  growthBytes: number;
}

async function main(): Promise<void> {
  const [registryUrl, repository, tag] = process.argv.slice(2);
  if (!registryUrl || !repository || !tag) throw new Error('usage: push-image-memory.probe.js <registry URL> <repository> <tag>');
  const image = await buildOciImage();
  const memory = trackRss();
  try {
    await pushImage(registryUrl, repository, tag, image);
    const large = image.layers[1];
    const report: PushImageMemoryReport = { digest: image.digest, largeLayer: { digest: large.digest, size: large.size }, growthBytes: memory.growth() };
    reportProbeResult(report);
  } finally {
    memory.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
