import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn, ValueTransformer } from 'typeorm';

export enum CacheEntryStatus {
  /** The live entry for its (upstream, relative_path); at most one (a partial unique index). */
  DEFAULT = 'default',
  PROCESSING = 'processing',
  /** Purged or superseded; the destroy job removes the row (and the object once no row references it). */
  PENDING_DESTRUCTION = 'pending_destruction',
  ERROR = 'error',
}

/** `bigint` columns come back from `pg` as strings; every value we store fits a double exactly. */
const bigintAsNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | null) => (value === null ? null : Number(value)),
};

/**
 * One cached upstream response: a manifest (by tag or digest) or a blob, as fetched through one upstream.
 * Bytes live in the blob store under `storageKey` (content-addressed: the digest), shared by every entry
 * with the same digest.
 */
@Entity({ name: 'cache_entries' })
export class CacheEntry {
  /** bigserial (read as a number; ids stay far below 2^53). The API names entries by (upstream, path) instead. */
  @PrimaryColumn({ type: 'bigint', generated: 'increment', transformer: bigintAsNumber })
  id: number;

  @Column({ type: 'integer' })
  groupId: number;

  @Column({ type: 'integer' })
  upstreamId: number;

  /** Registry-relative path, e.g. `/library/alpine/manifests/latest` or `/library/alpine/blobs/sha256:...`. */
  @Column({ type: 'text' })
  relativePath: string;

  /** `sha256:<64 hex>`. */
  @Column({ type: 'varchar', length: 71 })
  digest: string;

  @Column({ type: 'bigint', transformer: bigintAsNumber })
  size: number;

  @Column({ type: 'varchar', length: 255, default: 'application/octet-stream' })
  contentType: string;

  @Column({ type: 'varchar', length: 255, nullable: true })
  upstreamEtag: string | null;

  @Column({ type: 'timestamptz' })
  upstreamCheckedAt: Date;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  downloadsCount: number;

  @Column({ type: 'timestamptz' })
  downloadedAt: Date;

  @Column({ type: 'varchar', length: 40, nullable: true })
  fileSha1: string | null;

  /** Blob store key of the bytes (the digest for content-addressed storage). */
  @Column({ type: 'text' })
  storageKey: string;

  @Column({ type: 'varchar', length: 32, default: CacheEntryStatus.DEFAULT })
  status: CacheEntryStatus;

  @Column({ type: 'text', nullable: true })
  errorMessage: string | null;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt: Date;
}
