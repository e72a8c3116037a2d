import { Logger } from '@nestjs/common';
import { Readable, Writable } from 'node:stream';
import {
  BlobChunkSink,
  BlobStore,
  BlobWriteCancelledError,
  BlobWriter,
  BlobWriterClosedError,
  CommittedBlob,
  DigestMismatchError,
  digestHex,
} from './blob-store.js';
import { BlobSpool, type TailReadOptions } from './blob-spool.js';

/** How many bytes `stream` gathers before it stores them. */
const STREAM_BATCH = 1024 * 1024;
/**
 * The first batch is this small, and each next one 4 x larger up to STREAM_BATCH: the first bytes reach
 * tail readers (the client of a cache miss) without waiting for a whole MiB from the upstream.
 */
const FIRST_BATCH = 64 * 1024;

/** What a driver does with a write once its bytes are verified, or when it is abandoned. */
export interface BlobCommitTarget {
  /** Makes the verified spool the committed object for `digest` (atomically, never partially). */
  persist(digest: string, size: number): Promise<void>;
  /** Removes whatever the write left behind. Must not throw. */
  discard(): Promise<void>;
}

type WriterState = 'open' | 'committing' | 'committed' | 'cancelled' | 'failed';

/**
 * The BlobWriter both drivers hand out: bytes go to a local spool file (hashed as they are written,
 * followed by tail readers); the driver's commit target decides where verified bytes end up.
 */
export class SpooledBlobWriter implements BlobWriter {
  private readonly logger = new Logger(SpooledBlobWriter.name);
  private state: WriterState = 'open';
  private writes: Promise<void> = Promise.resolve();
  private writeError: Error | undefined;
  private abortReason: Error | undefined;
  private committed: Promise<CommittedBlob> | undefined;
  private result: CommittedBlob | undefined;
  private cancelled: Promise<void> | undefined;
  private writable: Writable | undefined;
  private batches: ChunkBatches | undefined;

  constructor(
    private readonly spool: BlobSpool,
    private readonly target: BlobCommitTarget,
    private readonly store: Pick<BlobStore, 'createReadStream'>,
  ) {}

  get bytesWritten(): number {
    return this.spool.size;
  }

  /**
   * Chunks piped in are stored in batches of about 1 MiB (one writev each; the first ones smaller, so the
   * first bytes go out at once): a 64 KiB network chunk is not worth a trip to the thread pool of its own.
   * While one batch is being stored the next one is gathered, so the source keeps flowing (at most two
   * batches wait: constant memory). Tail readers see each batch once it is stored.
   */
  get stream(): Writable {
    this.writable ??= this.batchingStream();
    return this.writable;
  }

  /** The batches of `stream`, fed one chunk at a time by a caller that needs no stream (an upstream body). */
  get sink(): BlobChunkSink {
    this.batches ??= new ChunkBatches((chunks) => this.appendAll(chunks, true));
    return this.batches;
  }

  private batchingStream(): Writable {
    // A stream's writer may reuse a chunk once its write is done: the spool keeps none of them.
    const batches = new ChunkBatches((chunks) => this.appendAll(chunks, false));
    return new Writable({
      highWaterMark: STREAM_BATCH,
      write: (chunk: Buffer, _encoding, callback) => {
        const waiting = batches.write(chunk);
        if (!waiting) return callback();
        waiting.then(() => callback(), callback);
      },
      final: (callback) => {
        batches.end().then(() => callback(), callback);
      },
      destroy: (err, callback) => {
        if (err) void this.cancel();
        callback(err);
      },
    });
  }

  append(chunk: Uint8Array): Promise<void> {
    return this.appendAll([chunk]);
  }

  /** `handedOver`: the caller never changes the chunks again, so the spool may keep them for tail readers. */
  private appendAll(chunks: Uint8Array[], handedOver = false): Promise<void> {
    if (this.state !== 'open') return Promise.reject(new BlobWriterClosedError(this.state));
    const write = this.writes.then(async () => {
      if (this.writeError) throw this.writeError;
      if (this.state === 'cancelled' || this.state === 'failed') throw new BlobWriterClosedError(this.state);
      await this.spool.appendAll(chunks, { keep: handedOver });
    });
    this.writes = write.catch((err: Error) => {
      this.writeError ??= err;
    });
    return write;
  }

  commit(expectedDigest?: string, expectedSize?: number): Promise<CommittedBlob> {
    if (this.committed) return this.committed;
    if (this.state !== 'open') return Promise.reject(new BlobWriterClosedError(this.state));
    this.state = 'committing';
    this.committed = this.verifyAndPersist(expectedDigest, expectedSize);
    return this.committed;
  }

  cancel(): Promise<void> {
    if (this.committed)
      return this.committed.then(
        () => undefined,
        () => undefined,
      );
    this.cancelled ??= (async () => {
      this.state = 'cancelled';
      await this.writes;
      await this.abort(new BlobWriteCancelledError());
    })();
    return this.cancelled;
  }

  openTailReader(from = 0, options: TailReadOptions = {}): Readable {
    if (!Number.isSafeInteger(from) || from < 0) throw new RangeError(`invalid tail reader offset ${from}`);
    if (this.state === 'committed' && this.result) return this.committedReader(this.result, from, options.end);
    if (this.state === 'cancelled' || this.state === 'failed') {
      const reason = this.abortReason ?? new BlobWriterClosedError(this.state);
      return new Readable({
        read() {
          this.destroy(reason);
        },
      });
    }
    return this.spool.openTailReader(from, options);
  }

  private async verifyAndPersist(expectedDigest: string | undefined, expectedSize: number | undefined): Promise<CommittedBlob> {
    await this.writes;
    if (this.writeError) return this.fail(this.writeError);
    try {
      if (expectedDigest !== undefined) digestHex(expectedDigest);
    } catch (err) {
      return this.fail(err as Error);
    }
    const digest = this.spool.digest();
    const size = this.spool.size;
    if ((expectedDigest !== undefined && expectedDigest !== digest) || (expectedSize !== undefined && expectedSize !== size)) {
      return this.fail(new DigestMismatchError(expectedDigest, digest, expectedSize, size));
    }
    // The bytes are verified: followers may finish now, while the driver makes them durable.
    this.spool.seal();
    try {
      await this.target.persist(digest, size);
    } catch (err) {
      return this.fail(err as Error);
    }
    this.result = { digest, size };
    this.state = 'committed';
    await this.spool.release();
    return this.result;
  }

  private async fail(reason: Error): Promise<never> {
    this.state = 'failed';
    await this.abort(reason);
    throw reason;
  }

  private async abort(reason: Error): Promise<void> {
    this.abortReason = reason;
    this.spool.abort(reason);
    try {
      await this.target.discard();
    } catch (err) {
      this.logger.warn(`could not discard an abandoned blob write: ${(err as Error).message}`);
    }
    await this.spool.release();
  }

  private committedReader(blob: CommittedBlob, from: number, end = blob.size - 1): Readable {
    if (from >= blob.size || end < from) return Readable.from([], { objectMode: false });
    const store = this.store;
    return Readable.from(
      (async function* () {
        yield* await store.createReadStream(blob.digest, { start: from, end });
      })(),
      { objectMode: false },
    );
  }
}

/**
 * Gathers chunks into batches (FIRST_BATCH, then 4 x larger up to STREAM_BATCH) and stores each with
 * `store` while the next one is gathered. A chunk that completes a batch waits for the batch before it.
 */
class ChunkBatches implements BlobChunkSink {
  private batch: Buffer[] = [];
  private batched = 0;
  private limit = FIRST_BATCH;
  /** The batch being stored, if any; its failure also fails the commit (the writer's writeError). */
  private storing: Promise<void> | undefined;

  constructor(private readonly store: (chunks: Buffer[]) => Promise<void>) {}

  write(chunk: Buffer): Promise<void> | undefined {
    this.batch.push(chunk);
    this.batched += chunk.byteLength;
    if (this.batched < this.limit) return undefined;
    const previous = this.storing;
    const stored = this.flush(); // queued behind `previous` (appendAll keeps the order)
    this.storing = stored;
    stored.catch(() => undefined);
    return previous;
  }

  async end(): Promise<void> {
    await Promise.all([this.storing, this.flush()]);
  }

  private flush(): Promise<void> {
    const chunks = this.batch;
    this.batch = [];
    this.batched = 0;
    this.limit = Math.min(this.limit * 4, STREAM_BATCH);
    return this.store(chunks);
  }
}
