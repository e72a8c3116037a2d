/**
 * What the app under test has cached and counted, read the way an operator would: cache_entries rows
 * straight from its database, and Prometheus counters from GET /metrics.
 */
import { DataSource } from 'typeorm';
import { INVALIDATION_BUS, type InvalidationBus } from '../../src/invalidation/invalidation-bus.js';
import type { TestApp } from './test-app.js';

export interface CacheEntryRow {
  id: number;
  upstreamId: number;
  relativePath: string;
  digest: string;
  size: number;
  status: string;
}

/** cache_entries rows whose relative path ends with `suffix` (e.g. `/blobs/sha256:...`), any upstream. */
export async function cacheEntryRows(app: TestApp, suffix: string, upstreamIds?: number[]): Promise<CacheEntryRow[]> {
  const rows = (await app.app
    .get(DataSource)
    .query(`SELECT id, upstream_id, relative_path, digest, size, status FROM cache_entries WHERE right(relative_path, $1) = $2 ORDER BY id`, [
      suffix.length,
      suffix,
    ])) as { id: string | number; upstream_id: number; relative_path: string; digest: string; size: string | number; status: string }[];
  return rows
    .map((r) => ({
      id: Number(r.id),
      upstreamId: Number(r.upstream_id),
      relativePath: r.relative_path,
      digest: r.digest,
      size: Number(r.size),
      status: r.status,
    }))
    .filter((r) => !upstreamIds || upstreamIds.includes(r.upstreamId));
}

/** Live (`default`) rows for `suffix`. */
export async function liveCacheEntryRows(app: TestApp, suffix: string, upstreamIds?: number[]): Promise<CacheEntryRow[]> {
  return (await cacheEntryRows(app, suffix, upstreamIds)).filter((r) => r.status === 'default');
}

/** Polls until a live row for `suffix` exists; undefined after `timeoutMs`. */
export async function waitForLiveRow(app: TestApp, suffix: string, timeoutMs: number, upstreamIds?: number[]): Promise<CacheEntryRow | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await liveCacheEntryRows(app, suffix, upstreamIds);
    if (row) return row;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The sum of a Prometheus metric's samples (all label sets) on GET /metrics; 0 when absent. */
export async function metricValue(app: TestApp, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${app.url}/metrics`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics -> ${res.status}: ${text.slice(0, 300)}`);
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/**
 * Makes a cached tag look last checked 25 hours ago (past the default 24-hour validity window), as if that
 * time had passed. Time passing also ends what the app remembers in memory (MEMORY_CACHE_TTL_MS), which an
 * UPDATE behind its back does not: so the app is told, as it would be by any change through its API.
 */
export async function backdateTagCheck(app: TestApp, relativePath: string): Promise<void> {
  await app.app.get(DataSource).query(`UPDATE cache_entries SET upstream_checked_at = now() - interval '25 hours' WHERE relative_path = $1`, [relativePath]);
  app.app.get<InvalidationBus>(INVALIDATION_BUS).changed('test: 25 hours pass');
}
