import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import { CacheEntry, CacheEntryStatus } from './cache-entry.entity.js';

/** How often accumulated downloads are written (one UPDATE for all entries served meanwhile). */
const DOWNLOAD_FLUSH_MS = 1000;

/**
 * What the pull path asks of the cache entries: the live entry for a path among a registry's
 * upstreams, revalidation bookkeeping, and download statistics batched off the hot path.
 * (Creating and updating entries is CacheEntryCreateOrUpdateService's.)
 */
@Injectable()
export class CacheEntryLookupService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger(CacheEntryLookupService.name);
  private downloads = new Map<number, { count: number; at: Date }>();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  /** findLive's statement and the columns it reads, built once from the entity's metadata. */
  private live?: { sql: string; columns: readonly ColumnMetadata[] };

  constructor(@InjectRepository(CacheEntry) private readonly entries: Repository<CacheEntry>) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flushDownloads(), DOWNLOAD_FLUSH_MS);
    this.timer.unref();
  }

  /** Before the database pool closes (onApplicationShutdown), write what is pending. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flushDownloads();
  }

  /** Live entries for `relativePath` among these upstreams, in the order the ids are given. */
  async findLive(upstreamIds: readonly number[], relativePath: string): Promise<CacheEntry[]> {
    if (upstreamIds.length === 0) return [];
    // The cache lookup of every pull request that memory cannot answer (a blob miss asks twice): one
    // statement written once, its rows hydrated as TypeORM's find() would, without building the query
    // again per call (measured: 0.13 against 0.43 ms of CPU per lookup, 0.26 against 0.50 ms per round trip).
    const { sql, columns } = (this.live ??= liveEntriesStatement(this.entries));
    const rows: Record<string, unknown>[] = await this.entries.query(sql, [[...upstreamIds], relativePath]);
    const driver = this.entries.manager.connection.driver;
    const found = rows.map((row) => {
      const entry = new CacheEntry();
      for (const column of columns) column.setEntityValue(entry, driver.prepareHydratedValue(row[column.databaseName], column));
      return entry;
    });
    return found.sort((a, b) => upstreamIds.indexOf(a.upstreamId) - upstreamIds.indexOf(b.upstreamId));
  }

  /** The upstream still has this tag at the same digest: serve the cache for another validity window. */
  async markChecked(entryId: number, at = new Date()): Promise<void> {
    await this.entries.update({ id: entryId }, { upstreamCheckedAt: at });
  }

  /** The entry's object is gone from storage: hand the row to the destroy job. */
  async markForDestruction(entryId: number): Promise<void> {
    await this.entries.update({ id: entryId, status: CacheEntryStatus.DEFAULT }, { status: CacheEntryStatus.PENDING_DESTRUCTION });
  }

  /** Counts a download; written in batches (see DOWNLOAD_FLUSH_MS). */
  recordDownload(entryId: number, at = new Date()): void {
    const current = this.downloads.get(entryId);
    if (current) {
      current.count += 1;
      current.at = at;
    } else {
      this.downloads.set(entryId, { count: 1, at });
    }
  }

  /**
   * Writes the accumulated download counts in one statement. Resolves once every download recorded
   * before the call is in the database (it waits for a flush already in progress).
   */
  flushDownloads(): Promise<void> {
    const previous = this.flushing ?? Promise.resolve();
    const next = previous.then(() => this.writeDownloads());
    this.flushing = next;
    void next.finally(() => {
      if (this.flushing === next) this.flushing = undefined;
    });
    return next;
  }

  private async writeDownloads(): Promise<void> {
    if (this.downloads.size === 0) return;
    const batch = this.downloads;
    this.downloads = new Map();
    const ids: string[] = [];
    const counts: number[] = [];
    const times: string[] = [];
    for (const [id, { count, at }] of batch) {
      ids.push(String(id));
      counts.push(count);
      times.push(at.toISOString());
    }
    try {
      await this.entries.query(
        `UPDATE cache_entries AS e
            SET downloads_count = e.downloads_count + d.count,
                downloaded_at = GREATEST(e.downloaded_at, d.at)
           FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS d(id, count, at)
          WHERE e.id = d.id`,
        [ids, counts, times],
      );
    } catch (err) {
      this.logger.warn(`could not record ${batch.size} download count(s): ${(err as Error).message}`);
    }
  }
}

/** The live entries of one path among some upstreams (the partial unique index on (upstream_id, relative_path) answers it). */
function liveEntriesStatement(entries: Repository<CacheEntry>): { sql: string; columns: readonly ColumnMetadata[] } {
  const { columns, tableName } = entries.metadata;
  const list = columns.map((c) => `"${c.databaseName}"`).join(', ');
  return {
    sql: `SELECT ${list} FROM "${tableName}" WHERE upstream_id = ANY($1) AND relative_path = $2 AND status = '${CacheEntryStatus.DEFAULT}'`,
    columns,
  };
}
