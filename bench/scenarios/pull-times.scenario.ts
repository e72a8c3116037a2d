/**
 * Cold and warm pulls with skopeo, every system in the round's rotated order, each pull timed against a
 * direct pull from the upstream in the same phase of the same round. Cold: the system's cache was just
 * emptied (freshCache) and the round's images are new. Warm: the same pulls again once the system has
 * cached them. For the big image, also the CPU seconds per GiB the system's processes spent on the pull.
 */
import type { BenchContext } from '../bench-context.js';
import { formatSize, recycleMemory, settleWrites, type BenchImage, type RoundImages } from '../bench-images.js';
import { skopeoPull } from '../clients/skopeo-pull.js';
import { cpuSecondsDuring } from '../process-cpu.js';
import { rotated } from '../statistics.js';

type Kind = 'big' | 'small' | 'index';
const KINDS: Kind[] = ['big', 'small', 'index'];

function title(kind: Kind, image: BenchImage, phase: 'cold' | 'warm'): string {
  const what =
    kind === 'big'
      ? `${formatSize(image.blobBytes)} image (${image.fixture.kind === 'manifest' ? image.fixture.layers.length : 0} layers)`
      : kind === 'small'
        ? `small image (${formatSize(image.blobBytes)})`
        : `multi-arch index, --all (${formatSize(image.blobBytes)})`;
  return `${phase} pull, ${what}`;
}

export function declarePullRows(ctx: BenchContext, images: RoundImages): void {
  for (const phase of ['cold', 'warm'] as const) {
    for (const kind of KINDS) ctx.rows.declare(`${phase}-pull-${kind}`, title(kind, images[kind], phase), 's');
  }
  for (const phase of ['cold', 'warm'] as const) {
    ctx.rows.declare(
      `cpu-${phase}-big`,
      `CPU seconds per GiB served, ${phase} pull of the ${formatSize(images.big.blobBytes)} image`,
      'CPU-s/GiB',
      "user + system time of the system's processes (all threads; nginx workers included; direct = the upstream registry) during the pull, per GiB of the image",
    );
  }
}

export async function measurePullTimes(ctx: BenchContext, images: RoundImages, round: number): Promise<void> {
  declarePullRows(ctx, images);
  const order = rotated(ctx.systems, round);
  const pullAll = async (phase: 'cold' | 'warm') => {
    for (const system of order) {
      if (phase === 'cold') await system.freshCache();
      // skopeo's copy and the system's cache of the round's images grow the page cache from memory just freed.
      await recycleMemory(ctx.workDir, 2 * KINDS.reduce((sum, kind) => sum + images[kind].totalBytes, 0));
      await settleWrites(); // the previous system's cache writes are not this one's cost
      for (const kind of KINDS) {
        const image = images[kind];
        const { result: seconds, seconds: cpu } = await cpuSecondsDuring(
          () => system.processGroups(),
          () => skopeoPull(system, image.name, image.tag, ctx.workDir, { all: image.all, signal: ctx.signal }),
        );
        ctx.rows.record(`${phase}-pull-${kind}`, system.id, round, seconds);
        if (kind === 'big') ctx.rows.record(`cpu-${phase}-big`, system.id, round, cpu / (image.totalBytes / 2 ** 30));
        ctx.progress(`round ${round + 1} ${phase} pull ${kind} ${system.id}: ${seconds.toFixed(2)} s, ${cpu.toFixed(2)} CPU-s`);
      }
    }
  };
  await pullAll('cold');
  const digests = KINDS.flatMap((kind) => images[kind].digests);
  for (const system of order) await system.settle(digests, 120_000);
  await pullAll('warm');
}
