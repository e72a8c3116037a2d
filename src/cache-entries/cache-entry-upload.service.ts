import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BadRequestException, Inject, Injectable, PayloadTooLargeException } from '@nestjs/common';
import { GroupPermission, type Actor } from '../accounts/actor.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import {
  Digest,
  OciError,
  isManifestMediaType,
  parseRelativePath,
  readManifestBody,
  relativePath as relativePathOf,
  resolveManifestMediaType,
  type RepositoryRequest,
} from '../oci/index.js';
import { BLOB_STORE, DigestMismatchError, type BlobStore } from '../storage/blob-store.js';
import { UpstreamsService } from '../upstreams/upstreams.service.js';
import type { PermissionCheckOptions } from '../common/permission-check-options.js';
import { CacheEntryCreateOrUpdateService } from './cache-entry-create-or-update.service.js';
import type { CacheEntry } from './cache-entry.entity.js';
import type { CacheEntryUploadAuthorizationDto } from './cache-entry-upload.dto.js';

const BLOB_CONTENT_TYPE = 'application/octet-stream';

export interface UploadInput {
  relativePath: string;
  body: Readable;
  contentType?: string;
  /** A digest the caller vouches for (Docker-Content-Digest), checked against the bytes. */
  announcedDigest?: string;
}

/**
 * Seeding a cache from a body instead of a pull (the seed merge request's authorize_upload and
 * upload): the background worker and maintainers pre-seeding air-gapped sites. The body streams into
 * the blob store, is verified against its digest, and only then becomes a live cache entry. A manifest
 * upload tells the InvalidationBus (a replica may remember the manifest it replaces).
 */
@Injectable()
export class CacheEntryUploadService {
  constructor(
    private readonly upstreams: UpstreamsService,
    private readonly cacheEntries: CacheEntryCreateOrUpdateService,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  /** Where and how large an upload may be, after the same permission check the upload makes. */
  async authorize(actor: Actor, upstreamId: number, relativePath: string, size?: number): Promise<CacheEntryUploadAuthorizationDto> {
    const upstream = await this.upstreams.findAccessible(actor, upstreamId, GroupPermission.WRITE);
    const request = parseUploadPath(relativePath);
    const path = pathOf(request);
    const isManifest = request.kind === 'manifest';
    const maxSize = isManifest ? this.limits.maxManifestSize : this.limits.maxCachedFileSize;
    if (size !== undefined && size > maxSize) throw new PayloadTooLargeException(`413 the upload is larger than ${maxSize} bytes`);
    return {
      upload_url: `/api/v4/virtual_registries/container/upstreams/${upstream.id}/cache_entries/upload?relative_path=${encodeURIComponent(path)}`,
      method: 'POST',
      relative_path: path,
      digest: expectedDigest(request) ?? null,
      max_size: maxSize,
      content_type: isManifest ? 'the manifest media type' : BLOB_CONTENT_TYPE,
    };
  }

  /** Streams `body` into the cache as `relativePath` of the upstream. Permission-checked unless skipPermissionCheck. */
  async upload(actor: Actor | null, upstreamId: number, input: UploadInput, options: PermissionCheckOptions = {}): Promise<CacheEntry> {
    const upstream = await this.upstreams.findAccessible(actor, upstreamId, GroupPermission.WRITE, options);
    const request = parseUploadPath(input.relativePath);
    const checked = { skipPermissionCheck: true };
    if (request.kind === 'manifest') {
      const bytes = await readManifestBody(input.body, this.limits.maxManifestSize).catch((err: unknown) => {
        throw OciError.is(err) ? new PayloadTooLargeException(`413 ${err.message}`) : err;
      });
      const contentType = resolveManifestMediaType(input.contentType, bytes);
      if (!contentType || !isManifestMediaType(contentType)) throw new BadRequestException('400 the body is not an image manifest or index');
      const digest = Digest.of(bytes).toString();
      const expected = expectedDigest(request) ?? input.announcedDigest;
      if (expected && expected !== digest) throw new BadRequestException(`400 the body has digest ${digest}, expected ${expected}`);
      await this.store(async (writer) => writer.append(bytes), digest, bytes.length);
      const record = { upstreamId: upstream.id, digest, size: bytes.length, contentType };
      const entry = await this.cacheEntries.execute(actor, { ...record, relativePath: pathOf(request) }, checked);
      if (request.reference.kind === 'tag') {
        await this.cacheEntries.execute(actor, { ...record, relativePath: relativePathOf(request.name, 'manifest', digest) }, checked);
      }
      this.bus.changed(`manifest ${entry.relativePath} uploaded to upstream ${upstream.id}`);
      return entry;
    }
    const digest = request.digest.toString();
    const committed = await this.store((writer) => pipeline(input.body, new SizeLimit(this.limits.maxCachedFileSize), writer.stream), digest);
    return this.cacheEntries.execute(
      actor,
      { upstreamId: upstream.id, relativePath: pathOf(request), digest, size: committed.size, contentType: BLOB_CONTENT_TYPE },
      checked,
    );
  }

  private async store(write: (writer: Awaited<ReturnType<BlobStore['create']>>) => Promise<unknown>, digest: string, size?: number): Promise<{ size: number }> {
    const writer = await this.blobs.create();
    try {
      await write(writer);
      return await writer.commit(digest, size);
    } catch (err) {
      await writer.cancel();
      if (err instanceof DigestMismatchError) throw new BadRequestException(`400 ${err.message}`);
      if (err instanceof UploadTooLargeError) throw new PayloadTooLargeException(`413 ${err.message}`);
      throw err;
    }
  }
}

class UploadTooLargeError extends Error {}

/** Fails the stream once more than `max` bytes went through. */
class SizeLimit extends Transform {
  private seen = 0;

  constructor(private readonly max: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) callback(new UploadTooLargeError(`the upload is larger than ${this.max} bytes`));
    else callback(null, chunk);
  }
}

type Cacheable = Extract<RepositoryRequest, { kind: 'blob' | 'manifest' }>;

function parseUploadPath(path: string): Cacheable {
  let request: RepositoryRequest;
  try {
    request = parseRelativePath(path.startsWith('/') ? path : `/${path}`);
  } catch (err) {
    throw new BadRequestException({ message: { relative_path: [OciError.is(err) ? err.message : 'is invalid'] } });
  }
  if (request.kind !== 'blob' && request.kind !== 'manifest') {
    throw new BadRequestException({ message: { relative_path: ['must be a /<name>/blobs/<digest> or /<name>/manifests/<reference> path'] } });
  }
  if (request.kind === 'blob' && !request.digest.isSupported) {
    throw new BadRequestException({ message: { relative_path: ['only sha256 digests can be cached'] } });
  }
  return request;
}

function pathOf(request: Cacheable): string {
  return request.kind === 'blob' ? relativePathOf(request.name, 'blob', request.digest) : relativePathOf(request.name, 'manifest', request.reference);
}

function expectedDigest(request: Cacheable): string | undefined {
  if (request.kind === 'blob') return request.digest.toString();
  return request.reference.kind === 'digest' ? request.reference.digest.toString() : undefined;
}
