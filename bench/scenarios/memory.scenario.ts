/**
 * Peak resident memory of the app while 4 clients pull one 2 GiB blob at once: first cold (one upstream
 * download, three followers), then warm (four reads from storage). The blob is generated and uploaded by
 * a child process (test/support/large-blob.ts). Peak = VmHWM after resetting it through
 * /proc/<pid>/clear_refs, and the highest VmRSS sampled every 50 ms (whichever is larger).
 * Every client hashes what it receives and must get the blob's exact bytes.
 */
import { streamDownload } from '../../test/support/blob-download.js';
import { pushLargeBlob } from '../../test/support/large-blob.js';
import type { BenchContext } from '../bench-context.js';
import { formatSize } from '../bench-images.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const CLIENTS = 4;

export async function measureMemory(ctx: BenchContext): Promise<void> {
  const size = 2 * GiB;
  for (const phase of ['cold', 'warm'] as const) {
    ctx.rows.declare(`memory-${phase}`, `app peak RSS (largest process), ${CLIENTS} clients pull a ${formatSize(size)} blob ${phase}`, 'MiB');
  }
  if (ctx.smoke) {
    ctx.rows.skip('memory-cold', 'smoke mode');
    ctx.rows.skip('memory-warm', 'smoke mode');
    return;
  }
  const name = 'bench/huge';
  ctx.progress(`uploading a ${formatSize(size)} blob to the upstream`);
  const blob = await pushLargeBlob(ctx.upstream.url, name, size, 'bench-huge');
  const app = ctx.app;
  await app.freshCache();
  const path = `/v2/${app.repositoryPath(name)}/blobs/${blob.digest}`;
  const headers = { authorization: await app.authorization(name) };

  for (const phase of ['cold', 'warm'] as const) {
    const peakReset = await app.app.resetPeak();
    const before = app.app.memory().rss;
    let sampled = before;
    const sampler = setInterval(() => {
      try {
        sampled = Math.max(sampled, app.app.memory().rss);
      } catch {
        // the process went away; the download results will say so
      }
    }, 50);
    const downloads = await Promise.all(Array.from({ length: CLIENTS }, () => streamDownload(app.baseUrl, path, { headers, timeoutMs: 600_000 })));
    clearInterval(sampler);
    const after = app.app.memory();
    const peak = Math.max(sampled, peakReset ? after.peak : 0);
    for (const d of downloads) {
      if (d.status !== 200 || !d.complete || d.digest !== blob.digest) {
        throw new Error(`${phase} 2 GiB pull: status ${d.status}, ${d.received} bytes, complete ${d.complete}, digest ${d.digest}: ${d.error?.message ?? ''}`);
      }
    }
    const seconds = Math.max(...downloads.map((d) => d.endedAt - d.startedAt)) / 1000;
    ctx.rows.record(`memory-${phase}`, 'app', 0, peak / MiB);
    ctx.rows.get(`memory-${phase}`).note =
      `RSS just before: ${Math.round(before / MiB)} MiB (the app process had served the whole run so far); ${CLIENTS} clients done in ${seconds.toFixed(1)} s`;
    ctx.progress(
      `${phase} ${CLIENTS} x ${formatSize(size)}: app peak RSS ${Math.round(peak / MiB)} MiB (before ${Math.round(before / MiB)} MiB), ${seconds.toFixed(1)} s`,
    );
    if (phase === 'cold') await app.settle([blob.digest], 600_000);
  }
}
