/**
 * Blob stores stream: 1 GiB written and read back through each driver grows the process's RSS by less
 * than 100 MiB. Measured in a process of its own (test/support/blob-store-memory.probe.ts), not in the
 * Jest process, whose RSS moves with whatever other suites and the runner allocate. The BlobStore
 * contract (src/storage/blob-store.contract.ts) proves the bytes of a streamed write on every driver.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtProbe, runChildProbe } from './support/child-probe.js';
import type { BlobStoreMemoryDriver, BlobStoreMemoryReport } from './support/blob-store-memory.probe.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const RSS_GROWTH_LIMIT_MiB = 100;

describe('BlobStore drivers stream 1 GiB in bounded memory (each in a process of its own)', () => {
  let workDir: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'blob-store-memory-'));
  });
  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  // s3rver keeps up with 1 GiB (parts, then one concatenated object, then the copy) in well under a minute.
  it.each<BlobStoreMemoryDriver>(['filesystem', 's3'])(
    '%s: writes and reads back 1 GiB with RSS growth under 100 MiB',
    async (driver) => {
      const driverDir = join(workDir, driver);
      try {
        const report = await runChildProbe<BlobStoreMemoryReport>(builtProbe('blob-store-memory'), [driver, String(GiB), driverDir], {
          timeoutMs: 14 * 60_000,
        });
        expect(report.sent.size).toBe(GiB);
        expect(report.committed).toEqual(report.sent);
        expect(report.readBack).toEqual(report.sent);
        // Peak RSS growth in MiB, while writing and over write + read-back.
        process.stdout.write(`blob store ${driver}: RSS growth ${toMiB(report.writeGrowthBytes)} MiB writing, ${toMiB(report.growthBytes)} MiB in all\n`);
        expect(toMiB(report.writeGrowthBytes)).toBeLessThan(RSS_GROWTH_LIMIT_MiB);
        expect(toMiB(report.growthBytes)).toBeLessThan(RSS_GROWTH_LIMIT_MiB);
      } finally {
        await rm(driverDir, { recursive: true, force: true });
      }
    },
    15 * 60_000,
  );
});

function toMiB(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}
