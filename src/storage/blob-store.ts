import type { Readable, Writable } from 'node:stream';

/**
 * Content-addressed blob storage (see CONVENTIONS.md "one fetch, two destinations, verified commit").
 *
 * Objects are keyed by their digest (`sha256:<64 hex>`), so bytes are stored once however many cache
 * entries point at them. Writes go to a temporary object first and become visible only through
 * `BlobWriter.commit()`, which verifies the digest computed while the bytes were written: a reader
 * never sees a partial or unverified object.
 */
export interface BlobStore {
  /** Size of a committed object, or undefined when there is none. */
  stat(digest: string): Promise<BlobStat | undefined>;

  /**
   * The committed object's bytes, whole or a range (both ends inclusive; `end` past the last byte is
   * clamped). Throws BlobNotFoundError when absent, BlobRangeNotSatisfiableError when `start` is at or
   * past the end of the object.
   */
  createReadStream(digest: string, range?: ByteRange): Promise<Readable>;

  /**
   * Where the committed object can be read without this process moving its bytes (data-plane offload):
   * a file below the store's root for a front proxy (filesystem), or a presigned GET URL valid for
   * `expiresInSeconds` on the store's public endpoint (S3). The object's existence is checked first:
   * throws BlobNotFoundError when it is absent, so nobody is sent to content that is not there.
   */
  offloadTarget(digest: string, options: OffloadOptions): Promise<OffloadTarget>;

  /** Starts a new write to a temporary object. */
  create(): Promise<BlobWriter>;

  /** Removes a committed object; absent objects are fine (idempotent). */
  delete(digest: string): Promise<void>;

  /** Every committed object. */
  list(): AsyncIterable<StoredBlob>;

  /**
   * Temporary objects left by writes (for the orphan cleanup job). It may include writes still in
   * progress: delete only those older than the longest plausible write.
   */
  listTemporary(): AsyncIterable<TemporaryBlob>;

  /** Removes one temporary object; absent ones are fine (idempotent). */
  deleteTemporary(id: string): Promise<void>;

  /** Resolves when the store is usable (readiness probe), rejects with the reason otherwise. */
  check(): Promise<void>;
}

import type { TailReadOptions } from './blob-spool.js';

export type { TailReadOptions };

export const BLOB_STORE = 'BLOB_STORE';

/**
 * One write in progress. Feed it through `stream` (pipe into it) or `append()`, then `commit()` or
 * `cancel()`. While it is open, any number of followers can read what is written so far, and then
 * the rest as it arrives, with `openTailReader()`.
 */
/** Takes a body chunk by chunk (BlobWriter.sink). */
export interface BlobChunkSink {
  /**
   * Undefined: the next chunk may come at once; a promise: the next chunk waits for it. The sink takes
   * the chunk over (tail readers may send it as it is): the caller never changes it afterwards.
   */
  write(chunk: Buffer): Promise<void> | undefined;
  /** Stores what is still gathered; call once after the last chunk. */
  end(): Promise<void>;
}

export interface BlobWriter {
  /** A Writable to pipe the body into. Destroying it with an error cancels the write. */
  readonly stream: Writable;

  /**
   * The same batching as `stream` without a stream: `write` takes one chunk and returns a promise when
   * the next one must wait for it, `end` stores the rest. Use one of `stream` and `sink`, not both.
   */
  readonly sink: BlobChunkSink;

  /** Appends one chunk; resolves once it is stored and visible to tail readers. */
  append(chunk: Uint8Array): Promise<void>;

  /** Bytes appended so far. */
  readonly bytesWritten: number;

  /**
   * Verifies what was written against `expectedDigest` / `expectedSize` (when given) and makes it the
   * committed object for its digest; without `expectedDigest` the computed digest is the key. On a
   * mismatch it throws DigestMismatchError and stores nothing. If the object already exists the
   * write is dropped and the commit succeeds (two writers of one digest end with one object).
   * Calling it again returns the first call's outcome.
   */
  commit(expectedDigest?: string, expectedSize?: number): Promise<CommittedBlob>;

  /** Discards the write and its temporary object. Safe to call twice, and a no-op after commit. */
  cancel(): Promise<void>;

  /**
   * Streams the bytes from offset `from`: those already written, then the rest as they are written.
   * It ends once the commit has verified the bytes, and errors if the write is cancelled or fails
   * verification. Opened after a commit, it reads the committed object.
   *
   * With `options.end` it stops after that byte; the chunk that completes the read is held back until
   * the bytes are verified (or until `options.withholdUntil` settles). Readers of a running write can
   * also write themselves to a socket (`isSelfWriting`).
   */
  openTailReader(from?: number, options?: TailReadOptions): Readable;
}

export interface OffloadOptions {
  /** Validity of a URL target (presigned URLs). */
  expiresInSeconds: number;
}

export type OffloadTarget =
  /** `path` is relative to the store's root directory, in the `sha256/ab/<hex>` layout (blobContentPath). */
  | { kind: 'file'; path: string; size: number }
  /** A GET URL that needs no other credential than what it carries itself, until `expiresAt`. */
  | { kind: 'url'; url: string; size: number; expiresAt: Date };

export interface BlobStat {
  size: number;
}

/** Inclusive byte offsets; `end` defaults to the last byte. */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface CommittedBlob {
  digest: string;
  size: number;
}

export interface StoredBlob {
  digest: string;
  size: number;
  modifiedAt: Date;
}

export interface TemporaryBlob {
  id: string;
  modifiedAt: Date;
}

/** The only digest algorithm stored: every registry in use addresses content by sha256. */
const DIGEST_PATTERN = /^sha256:([a-f0-9]{64})$/;

/** Temporary object ids are the UUIDs the drivers generate; anything else is refused (no path tricks). */
const TEMPORARY_ID_PATTERN = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

/** The hex part of a valid digest; throws InvalidDigestError otherwise. */
export function digestHex(digest: string): string {
  const match = DIGEST_PATTERN.exec(digest);
  if (!match) throw new InvalidDigestError(digest);
  return match[1];
}

/** Where a digest's object lives below a store's root: `sha256/ab/<hex>`. */
export function blobContentPath(digest: string): string {
  const hex = digestHex(digest);
  return `sha256/${hex.slice(0, 2)}/${hex}`;
}

/** The digest stored at `sha256/ab/<hex>`, or undefined for anything else. */
export function digestOfContentPath(path: string): string | undefined {
  const match = /^sha256\/([a-f0-9]{2})\/([a-f0-9]{64})$/.exec(path);
  return match && match[2].startsWith(match[1]) ? `sha256:${match[2]}` : undefined;
}

export function assertTemporaryId(id: string): void {
  if (!TEMPORARY_ID_PATTERN.test(id)) throw new InvalidTemporaryIdError(id);
}

export function isTemporaryId(id: string): boolean {
  return TEMPORARY_ID_PATTERN.test(id);
}

/** Throws a RangeError unless `start` and `end` are whole numbers with 0 <= start <= end. */
export function assertByteRange({ start, end }: ByteRange): void {
  if (!Number.isSafeInteger(start) || start < 0 || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) {
    throw new RangeError(`invalid byte range ${start}-${end ?? ''}`);
  }
}

/** Checks a range and resolves it against the object size (BlobRangeNotSatisfiableError past the end). */
export function resolveByteRange(range: ByteRange, size: number): { start: number; end: number } {
  assertByteRange(range);
  if (range.start >= size) throw new BlobRangeNotSatisfiableError(range.start, size);
  return { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) };
}

export class BlobNotFoundError extends Error {
  constructor(readonly digest: string) {
    super(`blob ${digest} is not stored`);
    this.name = 'BlobNotFoundError';
  }
}

export class BlobRangeNotSatisfiableError extends Error {
  constructor(
    readonly start: number,
    readonly size: number,
  ) {
    super(`range starting at byte ${start} is outside a blob of ${size} bytes`);
    this.name = 'BlobRangeNotSatisfiableError';
  }
}

export class DigestMismatchError extends Error {
  constructor(
    readonly expectedDigest: string | undefined,
    readonly actualDigest: string,
    readonly expectedSize: number | undefined,
    readonly actualSize: number,
  ) {
    super(
      expectedDigest !== undefined && expectedDigest !== actualDigest
        ? `content digest ${actualDigest} does not match the expected ${expectedDigest}`
        : `content size ${actualSize} does not match the expected ${expectedSize}`,
    );
    this.name = 'DigestMismatchError';
  }
}

export class InvalidDigestError extends Error {
  constructor(readonly digest: string) {
    super(`"${digest}" is not a sha256 digest`);
    this.name = 'InvalidDigestError';
  }
}

export class InvalidTemporaryIdError extends Error {
  constructor(readonly id: string) {
    super(`"${id}" is not a temporary blob id`);
    this.name = 'InvalidTemporaryIdError';
  }
}

/** The write was cancelled (raised to its tail readers and to later appends). */
export class BlobWriteCancelledError extends Error {
  constructor() {
    super('the blob write was cancelled');
    this.name = 'BlobWriteCancelledError';
  }
}

/** append() or commit() on a writer that was already cancelled, failed or committed. */
export class BlobWriterClosedError extends Error {
  constructor(state: string) {
    super(`the blob writer is ${state}`);
    this.name = 'BlobWriterClosedError';
  }
}
