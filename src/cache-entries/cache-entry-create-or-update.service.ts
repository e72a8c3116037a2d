import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import type { Actor } from '../accounts/actor.js';
import { GroupPermission } from '../accounts/actor.js';
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { upstreamNotFound } from '../common/not-found.exceptions.js';
import type { PermissionCheckOptions } from '../common/permission-check-options.js';
import { UpstreamsService } from '../upstreams/upstreams.service.js';
import { normalizeRelativePath } from './cache-entry-id.js';
import { CacheEntry, CacheEntryStatus } from './cache-entry.entity.js';

export interface CacheEntryInput {
  upstreamId: number;
  /** Registry-relative path (`/library/alpine/manifests/latest`); a missing leading `/` is added. */
  relativePath: string;
  /** `sha256:<64 hex>`, verified against the bytes by the caller before this call. */
  digest: string;
  size: number;
  contentType?: string | null;
  upstreamEtag?: string | null;
  fileSha1?: string | null;
  /** Blob store key of the committed bytes; defaults to the digest (content-addressed storage). */
  storageKey?: string;
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const SHA1 = /^[a-f0-9]{40}$/;
const MAX_PATH_LENGTH = 4096;
const MAX_HEADER_FIELD_LENGTH = 255;

/**
 * Creates or updates the live (`default`) cache entry of (upstream, relative_path) in one atomic
 * statement (`INSERT ... ON CONFLICT` on the partial unique index), stamping `upstream_checked_at`.
 * An existing live entry keeps its id, downloads and creation time; its digest, size and metadata are
 * replaced (a tag that moved). The background caching worker calls it with `skipPermissionCheck`;
 * every other caller needs write access to the upstream's group.
 */
@Injectable()
export class CacheEntryCreateOrUpdateService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly upstreams: UpstreamsService,
  ) {}

  async execute(actor: Actor | null, input: CacheEntryInput, options: PermissionCheckOptions = {}): Promise<CacheEntry> {
    const id = await this.record(actor, input, options);
    return this.dataSource.getRepository(CacheEntry).findOneByOrFail({ id });
  }

  /**
   * What `execute` does, in its one statement, answering only the entry's id: for the pull path, which
   * records an entry per fill and per manifest miss and needs nothing else back (one query, not two).
   */
  async record(actor: Actor | null, input: CacheEntryInput, options: PermissionCheckOptions = {}): Promise<number> {
    const values = validate(input);
    if (!options.skipPermissionCheck) {
      await this.upstreams.findAccessible(actor, input.upstreamId, GroupPermission.WRITE);
    }
    const rows = (await this.dataSource.query(
      `INSERT INTO cache_entries (group_id, upstream_id, relative_path, digest, size, content_type, upstream_etag,
                                  file_sha1, storage_key, status, upstream_checked_at, downloaded_at)
       SELECT u.group_id, u.id, $2, $3, $4, $5, $6, $7, $8, $9, now(), now()
         FROM upstreams u WHERE u.id = $1
       ON CONFLICT (upstream_id, relative_path) WHERE status = 'default'
       DO UPDATE SET digest = EXCLUDED.digest,
                     size = EXCLUDED.size,
                     content_type = EXCLUDED.content_type,
                     upstream_etag = EXCLUDED.upstream_etag,
                     file_sha1 = EXCLUDED.file_sha1,
                     storage_key = EXCLUDED.storage_key,
                     error_message = NULL,
                     upstream_checked_at = now(),
                     updated_at = now()
       RETURNING id`,
      [
        input.upstreamId,
        values.relativePath,
        values.digest,
        values.size,
        values.contentType,
        values.upstreamEtag,
        values.fileSha1,
        values.storageKey,
        CacheEntryStatus.DEFAULT,
      ],
    )) as { id: string }[];
    if (rows.length === 0) throw upstreamNotFound();
    return Number(rows[0].id);
  }
}

function validate(input: CacheEntryInput) {
  if (typeof input.relativePath !== 'string' || input.relativePath.replace(/^\/+/, '') === '') {
    throw new InvalidFieldException('relative_path', "can't be blank");
  }
  const relativePath = normalizeRelativePath(input.relativePath);
  if (relativePath.length > MAX_PATH_LENGTH) throw new InvalidFieldException('relative_path', `is too long (maximum is ${MAX_PATH_LENGTH} characters)`);
  if (typeof input.digest !== 'string' || !DIGEST.test(input.digest)) {
    throw new InvalidFieldException('digest', 'must be sha256:<64 lowercase hex characters>');
  }
  if (!Number.isSafeInteger(input.size) || input.size < 0) throw new InvalidFieldException('size', 'must be a whole number >= 0');
  if (input.fileSha1 && !SHA1.test(input.fileSha1)) throw new InvalidFieldException('file_sha1', 'must be 40 lowercase hex characters');
  const contentType = (input.contentType ?? '').trim() || 'application/octet-stream';
  if (contentType.length > MAX_HEADER_FIELD_LENGTH) throw new InvalidFieldException('content_type', 'is too long (maximum is 255 characters)');
  return {
    relativePath,
    digest: input.digest,
    size: input.size,
    contentType,
    // An ETag longer than the column is useless for comparison: drop it rather than fail the fill.
    upstreamEtag: input.upstreamEtag && input.upstreamEtag.length <= MAX_HEADER_FIELD_LENGTH ? input.upstreamEtag : null,
    fileSha1: input.fileSha1 || null,
    storageKey: input.storageKey || input.digest,
  };
}
