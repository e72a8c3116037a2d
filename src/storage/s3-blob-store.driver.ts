import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  UploadPartCopyCommand,
  type _Object,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Logger, OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  assertByteRange,
  assertTemporaryId,
  BlobNotFoundError,
  BlobRangeNotSatisfiableError,
  BlobStat,
  BlobStore,
  BlobWriter,
  blobContentPath,
  ByteRange,
  digestOfContentPath,
  isTemporaryId,
  OffloadOptions,
  OffloadTarget,
  StoredBlob,
  TemporaryBlob,
} from './blob-store.js';
import { BlobSpool } from './blob-spool.js';
import { S3SpoolUpload } from './s3-spool-upload.js';
import { BlobCommitTarget, SpooledBlobWriter } from './spooled-blob-writer.js';

const CONTENT_PREFIX = 'blobs/';
const UPLOADS_PREFIX = '_uploads/';
/** The largest object a single CopyObject may copy. */
const SINGLE_COPY_LIMIT = 5 * 1024 ** 3;
const COPY_PART_SIZE = 1024 ** 3;

export interface S3BlobStoreOptions {
  endpoint?: string;
  bucket: string;
  region: string;
  /** Both or neither; neither = the SDK's default credential chain (environment, instance role...). */
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
  /** Local directory for the spool files that tail readers follow (the files are unlinked at once). */
  spoolDirectory: string;
  /** Part size of the upload that follows a write (default 8 MiB; memory per write = partSize x queueSize). */
  partSize?: number;
  /** Parts in flight per write (default 2). */
  queueSize?: number;
  /** The endpoint clients reach the store at, for presigned URLs (default: `endpoint`). */
  publicEndpoint?: string;
}

/**
 * Blobs as objects in one S3 bucket:
 *
 *     blobs/sha256/ab/<hex>     committed objects
 *     _uploads/<uuid>           a verified write between its upload and its copy into place
 *
 * A write streams to a local spool file (hashed, followed by tail readers) and, from that file, to an
 * upload of `_uploads/<uuid>` (S3SpoolUpload). The upload completes only once the digest is verified,
 * so an unverified write never becomes an object (on a mismatch the multipart upload is aborted).
 * Commit then copies the temporary object to its content key server-side (atomic; UploadPartCopy
 * above the 5 GiB CopyObject limit) and deletes it. Multipart uploads left by a crashed process are
 * not listed by listTemporary: give the bucket an AbortIncompleteMultipartUpload lifecycle rule.
 */
export class S3BlobStoreDriver implements BlobStore, OnApplicationShutdown {
  private readonly logger = new Logger(S3BlobStoreDriver.name);
  readonly client: S3Client;
  readonly bucket: string;
  private readonly spoolDirectory: string;
  private readonly partSize: number;
  private readonly queueSize: number;
  /** Signs URLs for clients: same credentials, the public endpoint (the host is part of the signature). */
  private readonly presignClient: S3Client;

  constructor(options: S3BlobStoreOptions) {
    this.bucket = options.bucket;
    this.spoolDirectory = options.spoolDirectory;
    this.partSize = options.partSize ?? 8 * 1024 ** 2;
    this.queueSize = options.queueSize ?? 2;
    const clientOptions = (endpoint: string | undefined) => ({
      endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      credentials: options.accessKeyId && options.secretAccessKey ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } : undefined,
      // Without these the SDK sends aws-chunked bodies that some S3-compatible servers store verbatim.
      requestChecksumCalculation: 'WHEN_REQUIRED' as const,
      responseChecksumValidation: 'WHEN_REQUIRED' as const,
    });
    this.client = new S3Client(clientOptions(options.endpoint));
    this.presignClient = options.publicEndpoint ? new S3Client(clientOptions(options.publicEndpoint)) : this.client;
  }

  /**
   * Last of a shutdown (Nest's onApplicationShutdown): the fills have drained and the HTTP server has closed,
   * so no response still streams an object and no fill still uploads one. (Destroyed in onModuleDestroy, the
   * first hook, the client cut the cached blobs still being sent and the fills still uploading.)
   */
  onApplicationShutdown(): void {
    this.client.destroy();
    if (this.presignClient !== this.client) this.presignClient.destroy();
  }

  /** Creates the bucket when it does not exist (tests and first-run setups; production provisions it). */
  async createBucketIfMissing(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    }
  }

  async stat(digest: string): Promise<BlobStat | undefined> {
    return this.headObject(contentKey(digest));
  }

  async createReadStream(digest: string, range?: ByteRange): Promise<Readable> {
    const key = contentKey(digest);
    if (range) assertByteRange(range);
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range ? `bytes=${range.start}-${range.end ?? ''}` : undefined,
        }),
      );
      const body = response.Body as Readable;
      return range ? exactRange(body, range, response.ContentRange, response.ContentLength ?? 0) : body;
    } catch (err) {
      if (isMissingObject(err)) throw new BlobNotFoundError(digest);
      if (statusOf(err) === 416 && range) {
        throw new BlobRangeNotSatisfiableError(range.start, (await this.stat(digest))?.size ?? 0);
      }
      throw err;
    }
  }

  async offloadTarget(digest: string, options: OffloadOptions): Promise<OffloadTarget> {
    const key = contentKey(digest);
    const head = await this.headObject(key);
    if (!head) throw new BlobNotFoundError(digest);
    const expiresAt = new Date(Date.now() + options.expiresInSeconds * 1000);
    const url = await getSignedUrl(this.presignClient, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn: options.expiresInSeconds,
    });
    return { kind: 'url', url, size: head.size, expiresAt };
  }

  async create(): Promise<BlobWriter> {
    await mkdir(this.spoolDirectory, { recursive: true });
    const id = randomUUID();
    const spoolPath = join(this.spoolDirectory, id);
    const spool = await BlobSpool.create(spoolPath);
    try {
      // Nobody needs the name: the spool and its readers share the open handle, and a crash leaves nothing.
      await unlink(spoolPath);
    } catch (err) {
      await spool.release();
      throw err;
    }
    const tempKey = `${UPLOADS_PREFIX}${id}`;
    const upload = new S3SpoolUpload(spool, {
      client: this.client,
      bucket: this.bucket,
      key: tempKey,
      partSize: this.partSize,
      queueSize: this.queueSize,
    });
    return new SpooledBlobWriter(spool, new S3CommitTarget(this, upload, tempKey), this);
  }

  async delete(digest: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: contentKey(digest) }));
  }

  async *list(): AsyncIterable<StoredBlob> {
    for await (const object of this.listObjects(CONTENT_PREFIX)) {
      const digest = digestOfContentPath(object.Key!.slice(CONTENT_PREFIX.length));
      if (digest) yield { digest, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) };
    }
  }

  async *listTemporary(): AsyncIterable<TemporaryBlob> {
    for await (const object of this.listObjects(UPLOADS_PREFIX)) {
      const id = object.Key!.slice(UPLOADS_PREFIX.length);
      if (isTemporaryId(id)) yield { id, modifiedAt: object.LastModified ?? new Date(0) };
    }
  }

  async deleteTemporary(id: string): Promise<void> {
    assertTemporaryId(id);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: `${UPLOADS_PREFIX}${id}` }));
  }

  async check(): Promise<void> {
    await mkdir(this.spoolDirectory, { recursive: true });
    await access(this.spoolDirectory, constants.R_OK | constants.W_OK);
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  /** @internal for S3CommitTarget */
  async headObject(key: string): Promise<BlobStat | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: head.ContentLength ?? 0 };
    } catch (err) {
      if (isMissingObject(err)) return undefined;
      throw err;
    }
  }

  /** @internal for S3CommitTarget: server-side copy, atomic at the destination. */
  async copyObject(sourceKey: string, targetKey: string, size: number): Promise<void> {
    const copySource = `${this.bucket}/${sourceKey.split('/').map(encodeURIComponent).join('/')}`;
    if (size <= SINGLE_COPY_LIMIT) {
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: targetKey, CopySource: copySource }));
      return;
    }
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: targetKey, ContentType: 'application/octet-stream' }),
    );
    try {
      const parts = [];
      for (let start = 0, partNumber = 1; start < size; start += COPY_PART_SIZE, partNumber += 1) {
        const end = Math.min(start + COPY_PART_SIZE, size) - 1;
        const { CopyPartResult } = await this.client.send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: targetKey,
            UploadId,
            PartNumber: partNumber,
            CopySource: copySource,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
        );
        parts.push({ PartNumber: partNumber, ETag: CopyPartResult?.ETag });
      }
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: targetKey, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: targetKey, UploadId }))
        .catch((abortErr: Error) => this.logger.warn(`could not abort the multipart copy to ${targetKey}: ${abortErr.message}`));
      throw err;
    }
  }

  /** @internal for S3CommitTarget */
  async deleteKey(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  private async *listObjects(prefix: string): AsyncIterable<_Object> {
    let continuationToken: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: continuationToken }));
      for (const object of page.Contents ?? []) if (object.Key) yield object;
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
  }
}

class S3CommitTarget implements BlobCommitTarget {
  constructor(
    private readonly store: S3BlobStoreDriver,
    private readonly upload: S3SpoolUpload,
    private readonly tempKey: string,
  ) {}

  async persist(digest: string, size: number): Promise<void> {
    await this.upload.done;
    const key = contentKey(digest);
    if (!(await this.store.headObject(key))) await this.store.copyObject(this.tempKey, key, size);
    await this.store.deleteKey(this.tempKey);
  }

  async discard(): Promise<void> {
    this.upload.abort();
    await this.upload.done.catch(() => undefined);
    await this.store.deleteKey(this.tempKey);
  }
}

/**
 * The requested range, whatever the server sent: S3 answers exactly, but a server that ignores the
 * Range header (200, whole object) or widens it (s3rver serves `bytes=0-0` whole) must not make a
 * client receive the wrong bytes. A matching answer is passed through untouched.
 */
function exactRange(body: Readable, range: ByteRange, contentRange: string | undefined, contentLength: number): Readable {
  const served = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange ?? '');
  const servedStart = served ? Number(served[1]) : 0;
  const servedEnd = served ? Number(served[2]) : contentLength - 1;
  const size = served ? Number(served[3]) : contentLength;
  const end = Math.min(range.end ?? size - 1, size - 1);
  if (servedStart === range.start && servedEnd === end) return body;
  if (servedStart > range.start || servedEnd < end) {
    body.destroy();
    throw new Error(`the object store sent bytes ${servedStart}-${servedEnd} for a request of ${range.start}-${end}`);
  }
  return Readable.from(
    (async function* () {
      let position = servedStart;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        const from = Math.max(range.start - position, 0);
        const to = Math.min(end + 1 - position, chunk.length);
        if (to > from) yield chunk.subarray(from, to);
        position += chunk.length;
        if (position > end) return; // leaving the loop destroys the body
      }
      throw new Error(`the object store's answer ended at byte ${position} of ${end + 1}`);
    })(),
    { objectMode: false },
  );
}

function contentKey(digest: string): string {
  return `${CONTENT_PREFIX}${blobContentPath(digest)}`;
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

/** 404 for the object itself (HEAD answers a bare 404 either way; GET names a missing bucket). */
function isMissingObject(err: unknown): boolean {
  return statusOf(err) === 404 && (err as Error).name !== 'NoSuchBucket';
}
