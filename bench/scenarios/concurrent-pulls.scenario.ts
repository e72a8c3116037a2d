/**
 * 8 clients pull the same cold image at once (8 skopeo processes). Wall time until the last one is done,
 * against 8 concurrent direct pulls in the same round; and what reached the upstream, from its access
 * log: blob bytes sent / the image's blob bytes, and the GET count of the most-fetched blob. The app's
 * background work is included: the log is read after the app has committed every entry.
 */
import { accessLog } from '../../test/support/access-log.js';
import type { BenchContext } from '../bench-context.js';
import { formatSize, recycleMemory, settleWrites, type BenchImage } from '../bench-images.js';
import { skopeoPull } from '../clients/skopeo-pull.js';
import { cpuSecondsDuring, machineCpu, type MachineCpu } from '../process-cpu.js';
import { rotated } from '../statistics.js';
import type { PullSystem, SystemId } from '../systems/pull-system.js';

export const CONCURRENT_CLIENTS = 8;

export function declareConcurrentRows(ctx: BenchContext, image: BenchImage): void {
  const what = `${CONCURRENT_CLIENTS} concurrent cold pulls of ${formatSize(image.blobBytes)}`;
  ctx.rows.declare('concurrent-wall', `${what}, wall time`, 's');
  ctx.rows.declare('concurrent-upstream-bytes', `${what}, upstream blob bytes / image blob bytes`, 'x');
  ctx.rows.declare('concurrent-max-gets', `${what}, upstream GETs of the most-fetched blob`, 'GETs');
  ctx.rows.declare(
    'cpu-concurrent',
    `${what}, CPU seconds per GiB served`,
    'CPU-s/GiB',
    `user + system time of the system's processes (direct = the upstream registry; for the others the upstream's own time is not counted) from the clients' start until the system has committed every entry, per GiB the ${CONCURRENT_CLIENTS} clients received`,
  );
  ctx.rows.declare(
    'cpu-concurrent-machine-busy',
    `${what}, busy CPU seconds of the whole machine`,
    'CPU-s',
    `every CPU's time running anything (the ${CONCURRENT_CLIENTS} skopeo clients, the system, the upstream, the kernel: user, nice, system, irq and softirq time in /proc/stat) from the clients' start until the last one exits. The clients' own work dominates; a system's wall time that grows with this row did more work, one that grows without it left CPUs idle (the next row)`,
  );
  ctx.rows.declare(
    'cpu-concurrent-machine-idle',
    `${what}, idle CPU seconds of the whole machine`,
    'CPU-s',
    `every CPU's idle and I/O-wait time in /proc/stat over the same span: time nothing could run, waiting for the disk or for bytes to arrive`,
  );
}

/**
 * The reference peers are not ours to fix: Distribution 2.8's proxy sometimes answers 500 to one of 8
 * concurrent clients (seen twice in CI and full runs). A peer's failed attempt is retried once on a fresh
 * cache, and the row's note says so; a second failure, or any failure of the app or the direct pull,
 * stops the run as before.
 */
const RETRIED_PEERS: readonly SystemId[] = ['distribution', 'nginx'];

export async function measureConcurrentPulls(ctx: BenchContext, image: BenchImage, round: number): Promise<void> {
  declareConcurrentRows(ctx, image);
  for (const system of rotated(ctx.systems, round)) {
    await system.freshCache();
    // What the 8 clients and the system's cache write grows the page cache from memory just freed.
    await recycleMemory(ctx.workDir, (CONCURRENT_CLIENTS + 1) * image.totalBytes);
    await settleWrites(); // the previous system's cache writes are not this one's cost
    const {
      result: { seconds, upstreamRatio, maxGets, machine },
      seconds: cpu,
    } = await retryingPeerOnce(ctx, system, 'concurrent-wall', `round ${round + 1} ${CONCURRENT_CLIENTS} concurrent cold pulls`, () =>
      cpuSecondsDuring(
        () => system.processGroups(),
        () => pullConcurrently(ctx, image, () => system),
      ),
    );
    ctx.rows.record('concurrent-wall', system.id, round, seconds);
    ctx.rows.record('concurrent-upstream-bytes', system.id, round, upstreamRatio);
    ctx.rows.record('concurrent-max-gets', system.id, round, maxGets);
    ctx.rows.record('cpu-concurrent', system.id, round, cpu / ((CONCURRENT_CLIENTS * image.totalBytes) / 2 ** 30));
    ctx.rows.record('cpu-concurrent-machine-busy', system.id, round, machine.busy);
    ctx.rows.record('cpu-concurrent-machine-idle', system.id, round, machine.idle);
    ctx.progress(
      `round ${round + 1} ${CONCURRENT_CLIENTS} concurrent cold pulls ${system.id}: ${seconds.toFixed(2)} s, ${cpu.toFixed(2)} CPU-s (machine busy ${machine.busy.toFixed(2)}, idle ${machine.idle.toFixed(2)} CPU-s), upstream ${upstreamRatio.toFixed(2)} x image, max ${maxGets} GETs per blob`,
    );
  }
}

/**
 * `attempt` once, and for a reference peer once more on a fresh cache when it fails (said in progress
 * and in the note of row `rowId`); the app's and the direct pull's failures are never retried.
 */
export async function retryingPeerOnce<T>(
  ctx: Pick<BenchContext, 'rows' | 'progress' | 'signal'>,
  system: Pick<PullSystem, 'id' | 'freshCache'>,
  rowId: string,
  label: string,
  attempt: () => Promise<T>,
): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!RETRIED_PEERS.includes(system.id) || ctx.signal.aborted) throw err;
    const reason = (err as Error).message.split('\n')[0];
    ctx.progress(`${label} ${system.id} failed (${reason}); retrying once on a fresh cache`);
    ctx.rows.addNote(rowId, `${label}: ${system.id} failed once and was measured again on a fresh cache (${reason})`);
    await system.freshCache();
    return attempt();
  }
}

export interface ConcurrentPullResult {
  /** Wall time until the last client is done. */
  seconds: number;
  /** Upstream blob bytes of the image's blobs / the image's blob bytes. */
  upstreamRatio: number;
  /** Upstream GETs of the most-fetched blob. */
  maxGets: number;
  /** The whole machine's busy and idle CPU seconds while the clients ran. */
  machine: MachineCpu;
}

/**
 * CONCURRENT_CLIENTS skopeo pulls of `image` at once, client i (1-based) through `systemFor(i)`, then the
 * first client's system settles (the cache entries are committed) and the upstream's access log since the
 * start is read.
 */
export async function pullConcurrently(ctx: BenchContext, image: BenchImage, systemFor: (client: number) => PullSystem): Promise<ConcurrentPullResult> {
  const blobDigests = new Set(image.digests);
  const mark = await ctx.upstream.mark();
  const started = performance.now();
  const cpuBefore = machineCpu();
  await Promise.all(
    Array.from({ length: CONCURRENT_CLIENTS }, (_, i) =>
      skopeoPull(systemFor(i + 1), image.name, image.tag, ctx.workDir, { all: image.all, signal: ctx.signal }),
    ),
  );
  const cpuAfter = machineCpu();
  const seconds = (performance.now() - started) / 1000;
  const machine = { busy: cpuAfter.busy - cpuBefore.busy, idle: cpuAfter.idle - cpuBefore.idle };
  await systemFor(1).settle(image.digests, 120_000);
  const downloads = accessLog.blobDownloads(await ctx.upstream.requests(mark)).filter((e) => e.reference && blobDigests.has(e.reference));
  const bytes = downloads.reduce((sum, e) => sum + e.bytes, 0);
  const perBlob = new Map<string, number>();
  for (const e of downloads) perBlob.set(e.reference!, (perBlob.get(e.reference!) ?? 0) + 1);
  return { seconds, upstreamRatio: bytes / image.blobBytes, maxGets: Math.max(0, ...perBlob.values()), machine };
}
