/**
 * Manifest GET latency as the cache grows: p50 of sequential GETs by tag (one keep-alive connection, with
 * auth) when the app's upstream has 1,000 cache rows, then 1,000,000. The filler rows are inserted with
 * SQL (generate_series) straight into cache_entries for that upstream: live manifests and blobs of other
 * repositories, with valid digests. Needs the app on Postgres (DATABASE_URL).
 */
import pg from 'pg';
import { buildImage, pushImage } from '../../test/support/image-fixtures.js';
import type { BenchContext } from '../bench-context.js';
import { measureLatencies } from '../clients/http-load.js';
import { percentile } from '../statistics.js';
import { registryUrl } from '../systems/pull-system.js';
import { MANIFEST_ACCEPT } from './manifest-rate.scenario.js';

const SIZES = [1_000, 1_000_000] as const;
const BATCHES = 3;
const REQUESTS_PER_BATCH = 1_000;
const WARM_UP = 300;

const rowId = (rows: number) => `latency-${rows}`;

export async function measureCacheRowsLatency(ctx: BenchContext): Promise<void> {
  for (const rows of SIZES) {
    ctx.rows.declare(
      rowId(rows),
      `manifest GET by tag p50 latency, ${rows.toLocaleString('en-US')} cache rows (${BATCHES} batches x ${REQUESTS_PER_BATCH})`,
      'ms',
    );
  }
  const databaseUrl = ctx.app.app.databaseUrl;
  const skipReason = ctx.smoke ? 'smoke mode' : !databaseUrl ? 'needs the app on Postgres (set DATABASE_URL)' : undefined;
  if (skipReason) {
    for (const rows of SIZES) ctx.rows.skip(rowId(rows), skipReason);
    return;
  }

  const name = 'bench/rows';
  const image = await buildImage({ seed: 'bench-rows', layerSizes: [16 * 1024] });
  await pushImage(ctx.upstream.url, name, 'latest', image);
  const app = ctx.app;
  await app.freshCache();
  const url = registryUrl(app, name, 'manifests/latest');
  const headers = { accept: MANIFEST_ACCEPT, authorization: await app.authorization(name) };
  await measureLatencies(url, headers, 1);
  await app.settle([image.digest], 60_000);

  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const upstreamId = app.upstreamId;
    const { rows: upstreamRows } = await db.query<{ group_id: number }>('SELECT group_id FROM upstreams WHERE id = $1', [upstreamId]);
    const groupId = upstreamRows[0].group_id;
    for (const rows of SIZES) {
      await fillCacheRows(db, groupId, upstreamId, rows, ctx);
      await measureLatencies(url, headers, WARM_UP);
      for (let batch = 0; batch < BATCHES; batch++) {
        const p50 = percentile(await measureLatencies(url, headers, REQUESTS_PER_BATCH), 50);
        ctx.rows.record(rowId(rows), 'app', batch, p50);
        ctx.progress(`${rows} cache rows, batch ${batch + 1}: p50 ${p50.toFixed(3)} ms`);
      }
    }
  } finally {
    await db.end();
  }
}

/** Inserts filler rows until the upstream has `target` cache rows, then VACUUM ANALYZE and CHECKPOINT. */
async function fillCacheRows(db: pg.Client, groupId: number, upstreamId: number, target: number, ctx: BenchContext): Promise<void> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM cache_entries WHERE upstream_id = $1', [upstreamId]);
  let next = Number(rows[0].n);
  ctx.progress(`filling cache_entries to ${target} rows for upstream ${upstreamId}`);
  const CHUNK = 100_000;
  while (next < target) {
    const last = Math.min(target, next + CHUNK);
    // Odd i: a manifest by tag; even i: a blob. 400 repositories; digests are valid sha256 hex strings.
    await db.query(
      `INSERT INTO cache_entries
         (group_id, upstream_id, relative_path, digest, size, content_type, storage_key, status, upstream_checked_at, downloaded_at)
       SELECT $1, $2,
              CASE WHEN i % 2 = 1
                THEN '/filler/repo-' || (i % 400) || '/manifests/tag-' || i
                ELSE '/filler/repo-' || (i % 400) || '/blobs/sha256:' || md5(i::text) || md5((-i)::text) END,
              'sha256:' || md5(i::text) || md5((-i)::text),
              1024 + i % 4096,
              CASE WHEN i % 2 = 1 THEN 'application/vnd.oci.image.manifest.v1+json' ELSE 'application/octet-stream' END,
              'sha256/' || md5(i::text) || md5((-i)::text),
              'default',
              now() - (i % 1000) * interval '1 minute',
              now() - (i % 5000) * interval '1 minute'
         FROM generate_series($3::bigint, $4::bigint) AS i`,
      [groupId, upstreamId, next + 1, last],
    );
    next = last;
  }
  // Fresh statistics and visibility map, dirty pages written: autovacuum or a checkpoint triggered by the
  // bulk insert must not run during the measurement.
  await db.query('VACUUM (ANALYZE) cache_entries');
  // CHECKPOINT needs superuser or pg_checkpoint; without it the measurement still runs.
  await db.query('CHECKPOINT').catch(() => undefined);
}
