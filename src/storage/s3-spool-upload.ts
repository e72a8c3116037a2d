import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BlobSpool } from './blob-spool.js';

/**
 * How long one request of the upload may take before it is abandoned: 10 s plus 1 s per MiB of body
 * (an 8 MiB part: 18 s). Without a limit the AWS SDK waits forever, and an object store that stops
 * reading a request body on a reused connection (seen with s3rver: 70 KB left unread, no answer, no close)
 * hangs the fill for good, so the blob is never cached. Abandoned, the fill fails and its retry job
 * uploads it again on a new connection.
 */
export function requestTimeoutMs(bodyBytes: number): number {
  return 10_000 + Math.ceil(bodyBytes / 1024 ** 2) * 1000;
}

export interface S3SpoolUploadOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** Bytes per part (S3: at least 5 MiB, at most 10,000 parts). */
  partSize: number;
  /** Parts in flight at once; each has its own part buffer. */
  queueSize: number;
  /** How long a request with a body of this size may take (default requestTimeoutMs). */
  requestTimeoutMs?: (bodyBytes: number) => number;
}

/**
 * Uploads a spool to one S3 key while it is being written: each part is read from the spool file into
 * one of `queueSize` reusable part buffers as soon as the spool holds a full part, so memory stays at
 * partSize x queueSize whatever the blob size (lib-storage's Upload concatenates every part out of
 * a stream into fresh buffers: measured at 100-150 MiB of RSS growth for one 512 MiB write).
 *
 * The upload completes only after the spool is sealed, that is after the writer verified the digest:
 * one small object is a single PutObject sent then; a larger one is a multipart upload that is
 * completed then, or aborted if the spool is aborted. Until completion nothing is visible at `key`.
 */
export class S3SpoolUpload {
  private readonly abortController = new AbortController();
  private readonly buffers: Buffer[] = [];
  private allocated = 0;
  private uploadId: string | undefined;
  readonly done: Promise<void>;

  constructor(
    private readonly spool: BlobSpool,
    private readonly options: S3SpoolUploadOptions,
  ) {
    const letGo = spool.hold();
    this.done = this.run().finally(letGo);
    // Observed by whoever awaits `done`; until then a failure must not be an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** Cancelled by abort(), or once `bodyBytes` took longer than requestTimeoutMs. */
  private signal(bodyBytes: number): AbortSignal {
    return AbortSignal.any([this.abortController.signal, AbortSignal.timeout((this.options.requestTimeoutMs ?? requestTimeoutMs)(bodyBytes))]);
  }

  /** Stops the upload (requests in flight are cancelled, a multipart upload is aborted). */
  abort(): void {
    this.abortController.abort(new Error('the upload was aborted'));
  }

  private async run(): Promise<void> {
    const { partSize, queueSize } = this.options;
    const parts: Array<{ PartNumber: number; ETag: string | undefined }> = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    try {
      let offset = 0;
      for (let partNumber = 1; ; partNumber += 1) {
        await this.spool.whenAvailable(offset + partSize);
        this.throwIfStopped();
        const available = this.spool.size - offset;
        const last = this.spool.status === 'sealed' && available <= partSize;
        if (last && partNumber === 1) {
          await this.putSingleObject(available);
          return;
        }
        if (last && available === 0) break;
        this.uploadId ??= await this.createMultipartUpload();
        while (this.buffers.length === 0 && this.allocated === queueSize) await Promise.race(inFlight);
        if (failure) throw failure as Error;
        const buffer = this.takeBuffer();
        const length = Math.min(partSize, available);
        await this.readExactly(buffer, offset, length);
        const uploading: Promise<void> = this.uploadPart(partNumber, buffer.subarray(0, length))
          .then((etag) => {
            parts.push({ PartNumber: partNumber, ETag: etag });
          })
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(() => {
            this.buffers.push(buffer);
            inFlight.delete(uploading);
          });
        inFlight.add(uploading);
        offset += length;
        if (last) break;
      }
      await Promise.all(inFlight);
      if (failure) throw failure as Error;
      this.throwIfStopped();
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      await this.options.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.options.bucket,
          Key: this.options.key,
          UploadId: this.uploadId,
          MultipartUpload: { Parts: parts },
        }),
        { abortSignal: this.signal(0) },
      );
    } catch (err) {
      this.abort();
      await Promise.allSettled(inFlight);
      if (this.uploadId) {
        await this.options.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.options.key, UploadId: this.uploadId }))
          .catch(() => undefined); // an incomplete upload left behind is removed by the bucket's lifecycle rule
      }
      throw err;
    } finally {
      this.buffers.length = 0;
    }
  }

  private throwIfStopped(): void {
    if (this.spool.status === 'aborted') throw this.spool.abortReason ?? new Error('the spool was aborted');
    if (this.abortController.signal.aborted) throw this.abortController.signal.reason as Error;
  }

  private async putSingleObject(length: number): Promise<void> {
    const buffer = this.takeBuffer();
    await this.readExactly(buffer, 0, length);
    await this.options.client.send(
      new PutObjectCommand({
        Bucket: this.options.bucket,
        Key: this.options.key,
        Body: buffer.subarray(0, length),
        ContentLength: length,
        ContentType: 'application/octet-stream',
      }),
      { abortSignal: this.signal(length) },
    );
  }

  private async createMultipartUpload(): Promise<string> {
    const { UploadId } = await this.options.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.options.key, ContentType: 'application/octet-stream' }),
      { abortSignal: this.signal(0) },
    );
    if (!UploadId) throw new Error('the object store started a multipart upload without an id');
    return UploadId;
  }

  private async uploadPart(partNumber: number, body: Buffer): Promise<string | undefined> {
    const { ETag } = await this.options.client.send(
      new UploadPartCommand({
        Bucket: this.options.bucket,
        Key: this.options.key,
        UploadId: this.uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.byteLength,
      }),
      { abortSignal: this.signal(body.byteLength) },
    );
    return ETag;
  }

  /** A free part buffer: allocated on first need, reused after. */
  private takeBuffer(): Buffer {
    const free = this.buffers.pop();
    if (free) return free;
    this.allocated += 1;
    return Buffer.allocUnsafe(this.options.partSize);
  }

  private async readExactly(buffer: Buffer, position: number, length: number): Promise<void> {
    let read = 0;
    while (read < length) {
      const n = await this.spool.readInto(buffer.subarray(read), position + read, length - read);
      if (n === 0) throw new Error('the spool file is shorter than what was written to it');
      read += n;
    }
  }
}
