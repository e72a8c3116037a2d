import { Inject, Injectable } from '@nestjs/common';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import { storageConfig, type StorageConfig } from '../config/config.js';
import { MetricsService } from '../observability/metrics.service.js';
import type { ByteRange } from '../oci/index.js';
import { BLOB_STORE, type BlobStore } from '../storage/blob-store.js';
import { API_VERSION, blobHeaders } from './pull-responses.js';
import type { PullResponse } from './pull-response.js';

/**
 * The internal nginx location that maps onto the filesystem store's root (deploy/nginx/registry.conf.template):
 * `X-Accel-Redirect: /_offload/blobs/sha256/ab/<hex>` sends `<root>/sha256/ab/<hex>`.
 */
export const X_ACCEL_LOCATION = '/_offload/blobs/';

/** The `source` label of registry_bytes_served_total for bytes that nginx or the object store sent. */
export type OffloadSource = 'x-accel' | 'presigned';

/**
 * Data-plane offload of blob cache hits (issue 13; GitLab's Rails/Workhorse split): the app decides
 * (authorization, hit or miss, counting) and something faster moves the bytes of a hit:
 *
 * - BLOB_OFFLOAD=x-accel (filesystem storage): the answer carries the blob's headers and an
 *   `X-Accel-Redirect` to X_ACCEL_LOCATION with no body; the nginx in front sends the file (sendfile,
 *   Range from the client's request) and adds the blob headers it cannot know from the file.
 * - BLOB_REDIRECT=presigned (S3 storage): `307` to a presigned GET URL of the object on S3_PUBLIC_ENDPOINT,
 *   valid BLOB_REDIRECT_TTL_SECONDS; the client re-sends its Range there. The URL carries the store's
 *   signature only, never the client's credential.
 *
 * Only GETs of stored blobs come here (HEAD, manifests, misses, fills and their followers stay in the
 * app). The store checks the object exists first, so a vanished object raises BlobNotFoundError and the
 * caller treats it as today (the entry is marked, the request becomes a miss): nobody is ever sent to a
 * 404 of nginx or the store for content the cache claims to have.
 */
@Injectable()
export class BlobOffload {
  private readonly mode: OffloadSource | undefined;

  constructor(
    @Inject(storageConfig.KEY) private readonly storage: StorageConfig,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    private readonly metrics: MetricsService,
  ) {
    this.mode = storage.blobOffload === 'x-accel' ? 'x-accel' : storage.blobRedirect === 'presigned' ? 'presigned' : undefined;
  }

  /**
   * The answer to a GET of the stored blob `entry` (whole or `range`, already checked against its size)
   * when the app does not send the bytes itself; undefined when it does. Throws BlobNotFoundError when
   * the object is gone.
   */
  async answer(entry: CacheEntry, range: ByteRange | undefined): Promise<PullResponse | undefined> {
    if (!this.mode) return undefined;
    const target = await this.blobs.offloadTarget(entry.storageKey, { expiresInSeconds: this.storage.blobRedirectTtlSeconds });
    let response: PullResponse;
    if (this.mode === 'x-accel' && target.kind === 'file') {
      // nginx answers 200 or 206 from the file and the client's Range, with its own Content-Length and
      // Accept-Ranges; the internal location adds the digest, the ETag and the API version from these headers.
      const { 'accept-ranges': _nginxSetsIt, ...headers } = blobHeaders(entry.digest);
      response = {
        status: 200,
        headers: { ...headers, 'x-accel-redirect': `${X_ACCEL_LOCATION}${target.path}`, 'content-length': '0' },
        body: Buffer.alloc(0),
      };
    } else if (this.mode === 'presigned' && target.kind === 'url') {
      response = {
        status: 307,
        headers: {
          ...API_VERSION,
          location: target.url,
          'docker-content-digest': entry.digest,
          'cache-control': 'no-store',
          'content-length': '0',
        },
        body: Buffer.alloc(0),
      };
    } else {
      throw new Error(`offload ${this.mode} cannot use a ${target.kind} target of the storage driver in use`);
    }
    this.metrics.bytesServed.inc({ source: this.mode }, range ? range.end - range.start + 1 : entry.size);
    return response;
  }
}
