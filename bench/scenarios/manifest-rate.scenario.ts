/**
 * Cached manifest GETs per second, by tag and by digest, with the app's auth on every request (a registry
 * JWT in `Authorization: Bearer`); the upstream and the peers have no auth. The tag is inside its cache
 * validity window (default 24 h), so the app answers from its cache.
 */
import type { BenchContext } from '../bench-context.js';
import type { BenchImage } from '../bench-images.js';
import { loadTool, measureRequestRate } from '../clients/http-load.js';
import { registryUrl } from '../systems/pull-system.js';
import { rotated } from '../statistics.js';

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

const CONNECTIONS = 16;

export async function measureManifestRate(ctx: BenchContext, image: BenchImage, round: number): Promise<void> {
  const durationSeconds = ctx.smoke ? 1 : 4;
  const how = `${CONNECTIONS} connections, ${durationSeconds} s, ${loadTool()}`;
  ctx.rows.declare('manifest-rate-tag', `cached manifest GET by tag (${how})`, 'req/s');
  ctx.rows.declare('manifest-rate-digest', `cached manifest GET by digest (${how})`, 'req/s');
  for (const system of rotated(ctx.systems, round)) {
    const authorization = await system.authorization(image.name);
    const headers: Record<string, string> = { accept: MANIFEST_ACCEPT, ...(authorization ? { authorization } : {}) };
    for (const [row, reference] of [
      ['manifest-rate-tag', image.tag],
      ['manifest-rate-digest', image.digest],
    ] as const) {
      const url = registryUrl(system, image.name, `manifests/${reference}`);
      // A short unmeasured run first: JIT, connection pools, the peers' caches for this Accept header.
      await measureRequestRate(url, { durationSeconds: 1, connections: CONNECTIONS, headers, signal: ctx.signal });
      const result = await measureRequestRate(url, { durationSeconds, connections: CONNECTIONS, headers, signal: ctx.signal });
      ctx.rows.record(row, system.id, round, result.requestsPerSecond);
      ctx.progress(`round ${round + 1} ${row} ${system.id}: ${Math.round(result.requestsPerSecond)} req/s`);
    }
  }
}
