/**
 * Probe (see child-probe.ts): streams `<bytes>` through one BlobStore driver, write then read-back, and
 * reports the peak RSS growth of this process while writing and over the whole round trip.
 *
 *   node dist/test/support/blob-store-memory.probe.js <filesystem|s3> <bytes> <work directory>
 *
 * The S3 driver writes to s3rver (test/support/s3-server.ts), which runs in a process of its own: only the
 * driver's memory is measured. A 1 MiB write first warms the driver up (the S3 SDK loads its modules and
 * opens its connections lazily), so the measurement is of what the large write itself costs.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { FilesystemBlobStoreDriver } from '../../src/storage/filesystem-blob-store.driver.js';
import { S3BlobStoreDriver } from '../../src/storage/s3-blob-store.driver.js';
import { reportProbeResult, trackRss } from './child-probe.js';
import { startS3Server } from './s3-server.js';
import { streamBlobThrough, type StreamedBlobResult } from './streamed-blob.js';

export type BlobStoreMemoryDriver = 'filesystem' | 's3';

export interface BlobStoreMemoryReport extends StreamedBlobResult {
  driver: BlobStoreMemoryDriver;
  /** RSS when the large write started, in bytes. */
  baselineRssBytes: number;
  /** Peak RSS above the baseline until the commit answered, in bytes. */
  writeGrowthBytes: number;
  /** Peak RSS above the baseline over write and read-back, in bytes. */
  growthBytes: number;
}

/** What the probe is doing, said if the event loop empties before it reports (a promise nobody will settle). */
let stage = 'starting';

async function main(): Promise<void> {
  const [driver, bytesText, workDir] = process.argv.slice(2);
  const bytes = Number(bytesText);
  if ((driver !== 'filesystem' && driver !== 's3') || !Number.isSafeInteger(bytes) || bytes <= 0 || !workDir) {
    throw new Error('usage: blob-store-memory.probe.js <filesystem|s3> <bytes> <work directory>');
  }
  await mkdir(workDir, { recursive: true });
  stage = 'opening the store';
  const { store, dispose } = await openStore(driver, workDir);
  try {
    stage = 'the 1 MiB warm-up';
    await streamBlobThrough(store, 1024 ** 2);
    const memory = trackRss();
    let writeGrowthBytes = 0;
    let chunks = 0;
    stage = 'writing';
    try {
      const result = await streamBlobThrough(store, bytes, {
        onChunk: () => {
          chunks += 1;
          memory.sample();
        },
        onWritten: () => (stage = `committing (${chunks} chunks written)`),
        onCommitted: () => {
          writeGrowthBytes = memory.growth();
          stage = 'reading back';
        },
      });
      stage = 'reporting';
      const report: BlobStoreMemoryReport = { driver, ...result, baselineRssBytes: memory.baseline, writeGrowthBytes, growthBytes: memory.growth() };
      reportProbeResult(report);
    } finally {
      memory.stop();
    }
  } finally {
    stage = 'stopping the store';
    await dispose();
    stage = 'done';
  }
}

// Nothing left to wait for, yet main() has not settled: say where it stopped instead of exiting 0 silently.
process.on('beforeExit', () => {
  if (stage === 'done' || process.exitCode) return;
  process.stderr.write(`the event loop emptied while ${stage}: a promise nobody settles (active: ${process.getActiveResourcesInfo().join(', ') || 'none'})\n`);
  process.exitCode = 1;
});

async function openStore(driver: BlobStoreMemoryDriver, workDir: string): Promise<{ store: BlobStore; dispose: () => Promise<void> }> {
  if (driver === 'filesystem') return { store: new FilesystemBlobStoreDriver(join(workDir, 'blobs')), dispose: async () => undefined };
  const server = await startS3Server(join(workDir, 's3rver'));
  const store = new S3BlobStoreDriver({
    endpoint: server.endpoint,
    bucket: 'blobs',
    region: 'us-east-1',
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    forcePathStyle: true,
    spoolDirectory: join(workDir, 'spool'),
  });
  try {
    await store.createBucketIfMissing();
  } catch (err) {
    store.onApplicationShutdown();
    await server.stop();
    throw err;
  }
  return {
    store,
    dispose: async () => {
      store.onApplicationShutdown();
      await server.stop();
    },
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
