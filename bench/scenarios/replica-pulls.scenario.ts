/**
 * The 8 concurrent cold pulls of concurrent-pulls.scenario.ts split across two app replicas of one
 * deployment (app-replicas.ts: shared Postgres, Redis and storage, one worker): odd clients on replica 1,
 * even clients on replica 2. Against the same 8 through replica 1 alone, in the same round and in a
 * rotated order, each on a big image nobody pulled before (the replicas share their storage). Rows: both
 * wall times, their ratio, and what reached the upstream across both replicas (its access log, after the
 * entries are committed) / the image's blob bytes: 1.00 when the replicas fetch each blob once between them.
 */
import type { BenchContext } from '../bench-context.js';
import { formatSize, type BenchImage } from '../bench-images.js';
import { rotated } from '../statistics.js';
import type { AppReplicas } from '../systems/app-replicas.js';
import type { PullSystem } from '../systems/pull-system.js';
import { CONCURRENT_CLIENTS, pullConcurrently } from './concurrent-pulls.scenario.js';

const ROWS = ['replicas-wall-one', 'replicas-wall-two', 'replicas-wall', 'replicas-upstream-bytes'] as const;

function declareReplicaRows(ctx: BenchContext, image: BenchImage): void {
  const what = `${CONCURRENT_CLIENTS} concurrent cold pulls of ${formatSize(image.blobBytes)}`;
  ctx.rows.declare('replicas-wall-one', `${what} through 1 of 2 app replicas, wall time`, 's');
  ctx.rows.declare('replicas-wall-two', `${what} split across 2 app replicas (odd/even clients), wall time`, 's');
  ctx.rows.declare('replicas-wall', `${what}, wall time split across 2 app replicas / through 1`, 'x');
  ctx.rows.declare('replicas-upstream-bytes', `${what} split across 2 app replicas, upstream blob bytes / image blob bytes`, 'x');
}

/** The replica rows (titled after `image`, a big image of this run), not measured for `reason`. */
export function skipReplicaRows(ctx: BenchContext, image: BenchImage, reason: string): void {
  declareReplicaRows(ctx, image);
  for (const id of ROWS) ctx.rows.skip(id, reason);
}

/** `images`: two big images nobody pulled before, one for each measurement. */
export async function measureReplicaPulls(ctx: BenchContext, replicas: AppReplicas, images: readonly BenchImage[], round: number): Promise<void> {
  declareReplicaRows(ctx, images[0]);
  ctx.rows.get('replicas-wall').note = replicas.configuration;
  const [first, second] = replicas.systems;
  const setups: { replicas: 'one' | 'two'; image: BenchImage; systemFor: (client: number) => PullSystem }[] = [
    { replicas: 'one', image: images[0], systemFor: () => first },
    { replicas: 'two', image: images[1], systemFor: (client) => (client % 2 === 1 ? first : second) },
  ];
  const seconds = { one: NaN, two: NaN };
  for (const setup of rotated(setups, round)) {
    await first.freshCache();
    const result = await pullConcurrently(ctx, setup.image, setup.systemFor);
    seconds[setup.replicas] = result.seconds;
    ctx.rows.record(`replicas-wall-${setup.replicas}`, 'app', round, result.seconds);
    if (setup.replicas === 'two') ctx.rows.record('replicas-upstream-bytes', 'app', round, result.upstreamRatio);
    ctx.progress(
      `round ${round + 1} ${CONCURRENT_CLIENTS} concurrent cold pulls through ${setup.replicas === 'one' ? '1 app replica' : '2 app replicas'}: ` +
        `${result.seconds.toFixed(2)} s, upstream ${result.upstreamRatio.toFixed(2)} x image, max ${result.maxGets} GETs per blob`,
    );
  }
  ctx.rows.record('replicas-wall', 'app', round, seconds.two / seconds.one);
}
