import { EventEmitter } from 'node:events';
import { FileHandle, open } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable, type Writable } from 'node:stream';
import { createBlobHasher, type BlobHasher, type HashingPlace } from './blob-hasher.js';
import { clientGone, endOf, FILE_READ_SIZE, READ_BUFFERS, WriteSlot, writePieces, type SelfWritingBody } from './file-body.js';
import { sendFileToResponse, sendfileSocket, type SendfileMode } from './socket-sendfile.js';

/** Where a tail reader stops, and what its last chunk waits for. */
export interface TailReadOptions {
  /** The last byte to read (inclusive); without it the reader follows the spool until it is sealed. */
  end?: number;
  /**
   * The chunk that reaches `end` is held back until this settles (rejecting fails the reader); by
   * default until the spool is sealed, i.e. the whole object has been verified.
   */
  withholdUntil?: Promise<unknown>;
}

export type BlobSpoolStatus = 'open' | 'sealed' | 'aborted';

/**
 * The local file a write lands in while it is open: it hashes what it stores and lets tail readers
 * (and the S3 part uploader) follow it. They share the spool's file handle with positional reads, so
 * the file can be renamed into place or unlinked while they read. The handle closes once the writer
 * has released the spool and every reader has let go of it.
 */
export class BlobSpool {
  private readonly changes = new EventEmitter().setMaxListeners(0);
  private written = 0;
  private state: BlobSpoolStatus = 'open';
  private reason: Error | undefined;
  private hexDigest: string | undefined;
  private holders = 1; // the writer
  /**
   * The batch stored last, until the next one is: a tail reader that has caught up sends these very
   * chunks instead of reading the same bytes back from the file (the client of a cache miss usually has).
   */
  private recent: { start: number; chunks: readonly Uint8Array[] } | undefined;
  private released = false;
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly handle: FileHandle,
    /** How tail readers send stored bytes to an HTTP client's socket (`off`: they write them themselves). */
    readonly sendfile: SendfileMode,
    /** On libuv's thread pool when the native addon is built: the event loop does not hash. */
    private readonly hasher: BlobHasher,
  ) {}

  /** Creates the file (it must not exist yet). `hashing`: where to hash (by default the thread pool when this build can). */
  static async create(path: string, options: { sendfile?: SendfileMode; hashing?: HashingPlace } = {}): Promise<BlobSpool> {
    return new BlobSpool(await open(path, 'wx+'), options.sendfile ?? 'off', createBlobHasher(options.hashing));
  }

  /** The spool file's descriptor, for sendfile; valid while the spool is held (`hold`). */
  get descriptor(): number {
    return this.handle.fd;
  }

  /** Bytes stored so far. */
  get size(): number {
    return this.written;
  }

  get status(): BlobSpoolStatus {
    return this.state;
  }

  /** Why the spool was aborted. */
  get abortReason(): Error | undefined {
    return this.reason;
  }

  /** Stores a chunk at the end of the file. Callers append one chunk (or batch) at a time. */
  async append(chunk: Uint8Array): Promise<void> {
    await this.appendAll([chunk]);
  }

  /**
   * Stores chunks at the end of the file with one positional writev (a batch costs one syscall, not one
   * each) and hashes them: with the native addon one pool thread writes then hashes the batch (one trip to
   * libuv's thread pool, not two); without it node:fs writes on the pool while the event loop hashes.
   * Tail readers read stored bytes back from the file (the page cache). Once it resolves the spool holds
   * no reference to the chunks, unless `keep` says the caller hands them over: then the spool keeps this
   * batch until the next one is stored, and a reader that has caught up sends it without reading it back
   * (`storedPieces`). Only the last batch: network chunks kept for followers outlive the young generation,
   * and ~200 MiB of them promoted per fill made V8 run a full mark-compact every ~25 MiB (external memory
   * pressure): a cold pull cost twice the CPU.
   */
  async appendAll(chunks: readonly Uint8Array[], options: { keep?: boolean } = {}): Promise<void> {
    if (this.state !== 'open') throw new Error(`cannot append to a ${this.state} spool`);
    const batch = chunks.filter((c) => c.byteLength > 0);
    const total = batch.reduce((sum, c) => sum + c.byteLength, 0);
    if (total > 0) {
      if (this.hasher.writeAndUpdate) {
        // Stored, then hashed, by one pool thread: one trip to the pool per batch, not two.
        await this.hasher.writeAndUpdate(this.handle.fd, this.written, batch);
      } else {
        // Both only read the chunks; both settle before this returns, so a caller may reuse them after.
        const [stored, hashed] = await Promise.allSettled([this.store(batch, this.written), this.hasher.update(batch)]);
        if (stored.status === 'rejected') throw stored.reason;
        if (hashed.status === 'rejected') throw hashed.reason;
      }
      this.recent = options.keep ? { start: this.written, chunks: batch } : undefined;
    }
    this.written += total;
    this.changes.emit('change');
  }

  /** Writes `chunks` at `position`, again from where a short writev stopped. */
  private async store(chunks: readonly Uint8Array[], position: number): Promise<void> {
    let pending = chunks;
    while (pending.length > 0) {
      const { bytesWritten } = await this.handle.writev(pending as Uint8Array[], position);
      position += bytesWritten;
      pending = unwritten(pending, bytesWritten);
    }
  }

  /**
   * Bytes `position .. position + length - 1` as pieces of the batch stored last, when they all lie in
   * it; undefined otherwise (read them from the file). The pieces share memory with that batch: never
   * write to them.
   */
  storedPieces(position: number, length: number): Uint8Array[] | undefined {
    const recent = this.recent;
    if (!recent || position < recent.start || length <= 0) return undefined;
    const pieces: Uint8Array[] = [];
    let offset = recent.start;
    let wanted = length;
    for (const chunk of recent.chunks) {
      const chunkEnd = offset + chunk.byteLength;
      if (chunkEnd > position && wanted > 0) {
        const from = Math.max(position, offset) - offset;
        const to = Math.min(chunk.byteLength, from + wanted);
        pieces.push(from === 0 && to === chunk.byteLength ? chunk : chunk.subarray(from, to));
        wanted -= to - from;
      }
      offset = chunkEnd;
    }
    return wanted === 0 ? pieces : undefined;
  }

  /** `sha256:<hex>` of everything appended; appending after this is an error. */
  digest(): string {
    this.hexDigest ??= this.hasher.digest();
    return `sha256:${this.hexDigest}`;
  }

  /** Flushes the file to disk. */
  async sync(): Promise<void> {
    await this.handle.sync();
  }

  /** No more bytes: readers end once they have read everything. */
  seal(): void {
    if (this.state !== 'open') return;
    this.state = 'sealed';
    this.changes.emit('change');
  }

  /**
   * The write failed or was cancelled: readers error with `reason`. Once sealed (verified), the bytes
   * stay readable whatever happens to the write afterwards.
   */
  abort(reason: Error): void {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.reason = reason;
    this.recent = undefined;
    this.changes.emit('change');
  }

  /** Resolves once the spool is sealed (its bytes verified); rejects with the reason when it is aborted. */
  whenSealed(): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.state === 'open') return;
        this.changes.off('change', check);
        if (this.state === 'sealed') resolve();
        else reject(this.reason ?? new Error('the spool was aborted'));
      };
      this.changes.on('change', check);
      check();
    });
  }

  /** Resolves once `end` bytes are stored, or the spool is sealed or aborted. */
  whenAvailable(end: number): Promise<void> {
    if (this.written >= end || this.state !== 'open') return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.written >= end || this.state !== 'open') {
          this.changes.off('change', check);
          resolve();
        }
      };
      this.changes.on('change', check);
    });
  }

  /** Reads stored bytes at `position` into `buffer`; returns how many were read. */
  async readInto(buffer: Buffer, position: number, length = buffer.byteLength): Promise<number> {
    const { bytesRead } = await this.handle.read(buffer, 0, length, position);
    return bytesRead;
  }

  /** Keeps the file handle open for a reader; call the returned function once done with it. */
  hold(): () => void {
    if (this.closed) throw new Error('the spool is closed');
    this.holders += 1;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.letGo();
    };
  }

  /** The writer is done with the spool; the file handle closes when the last reader is. */
  async release(): Promise<void> {
    if (this.released) return this.closed ?? Promise.resolve();
    this.released = true;
    this.recent = undefined;
    this.letGo();
    await this.closed;
  }

  /** Streams the bytes from `from` on, following the file until it is sealed (end) or aborted (error). */
  openTailReader(from = 0, options: TailReadOptions = {}): Readable {
    return new SpoolTailReader(this, from, options);
  }

  private letGo(): void {
    this.holders -= 1;
    if (this.holders === 0) this.closed = this.handle.close().catch(() => undefined);
  }
}

/** The most a tail reader sends with one sendfile: what is stored beyond it, up to this. */
const SENDFILE_SPAN = 64 * 1024 * 1024;

/** The chunks left once `written` bytes of them are stored (a short writev). */
function unwritten(chunks: readonly Uint8Array[], written: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  for (const chunk of chunks) {
    if (written >= chunk.byteLength) {
      written -= chunk.byteLength;
      continue;
    }
    rest.push(written > 0 ? chunk.subarray(written) : chunk);
    written = 0;
  }
  return rest;
}

/**
 * Follows a spool from `from`: bytes as they are stored, then the end once sealed (or `options.end` is
 * reached). The chunk that completes the read is held back until the bytes are verified (or
 * `options.withholdUntil`), so a client never completes a body that turns out wrong. Read it as a stream,
 * or let it write itself to a socket (`writeTo`: reused 1 MiB buffers, no stream stages; a reader that
 * has caught up with the writer sends the batch just stored, as it is, without reading it back). To an
 * HTTP client on a plain TCP connection, with a spool created with `sendfile`, the bytes it would read
 * back go from the page cache with sendfile(2) instead.
 */
class SpoolTailReader extends Readable implements SelfWritingBody {
  private readonly letGo: () => void;
  private position: number;
  private reading = false;
  private readonly last: number;

  constructor(
    private readonly spool: BlobSpool,
    from: number,
    private readonly options: TailReadOptions,
  ) {
    super({ highWaterMark: FILE_READ_SIZE });
    this.letGo = spool.hold();
    this.position = from;
    this.last = options.end ?? Infinity;
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.pump().then(
      () => {
        this.reading = false;
      },
      (err: Error) => {
        this.reading = false;
        this.destroy(err);
      },
    );
  }

  /** Pushes what is stored (until push() asks to stop), or waits for more. */
  private async pump(): Promise<void> {
    for (;;) {
      if (this.destroyed) return;
      const length = await this.nextLength(FILE_READ_SIZE);
      if (this.destroyed) return;
      if (length === 0) {
        this.push(null);
        return;
      }
      const chunk = Buffer.allocUnsafe(length);
      const completes = await this.readChunk(chunk, length);
      if (this.destroyed) return;
      if (!this.push(chunk)) {
        if (completes) this.push(null);
        return;
      }
      if (completes) {
        this.push(null);
        return;
      }
    }
  }

  async writeTo(out: Writable): Promise<void> {
    if (this.readableFlowing !== null || this.destroyed) throw new Error('this body is already being read as a stream');
    const socket = await sendfileSocket(out, this.spool.sendfile);
    if (socket) return this.sendFilesTo(out as ServerResponse, socket);
    const slots = [new WriteSlot(READ_BUFFERS.take()), new WriteSlot(READ_BUFFERS.take())];
    const gone = clientGone(out);
    try {
      for (let turn = 0; ; turn++) {
        const slot = slots[turn & 1];
        await Promise.race([slot.free, gone]);
        const length = await Promise.race([this.nextLength(slot.buffer.length), gone]);
        if (length === 0) break;
        const pieces = this.spool.storedPieces(this.position, length);
        const completes = await Promise.race([pieces ? this.advance(length) : this.readChunk(slot.buffer, length), gone]);
        if (out.destroyed) throw new Error('the client closed the connection');
        if (pieces) slot.sendPieces(out, pieces);
        else slot.send(out, length);
        if (completes) break;
      }
      await Promise.race([Promise.all(slots.map((s) => s.free)), gone]);
      await endOf(out, gone);
    } finally {
      for (const slot of slots) if (slot.idle) READ_BUFFERS.give(slot.buffer);
      this.destroy();
    }
  }

  /**
   * What is stored and not sent yet goes in one sendfile (or, when it is all in the batch just stored, as
   * those chunks); the part that completes the read waits for the verification first, as always.
   */
  private async sendFilesTo(out: ServerResponse, socket: Socket): Promise<void> {
    const gone = clientGone(out);
    try {
      for (;;) {
        const length = await Promise.race([this.nextLength(SENDFILE_SPAN), gone]);
        if (length === 0) break;
        const at = this.position;
        const pieces = this.spool.storedPieces(at, length);
        const completes = await Promise.race([this.advance(length), gone]);
        if (socket.destroyed) throw new Error('the client closed the connection');
        if (pieces) await Promise.race([writePieces(out, pieces), gone]);
        else await sendFileToResponse(out, socket, this.spool.descriptor, at, length, this.spool.sendfile);
        if (completes) break;
      }
      await endOf(out, gone);
    } finally {
      this.destroy();
    }
  }

  /** How many bytes the next read takes (at most `max`), once some are stored; 0 at the end. */
  private async nextLength(max: number): Promise<number> {
    for (;;) {
      if (this.spool.status === 'aborted') throw this.spool.abortReason ?? new Error('the spool was aborted');
      if (this.position > this.last) return 0;
      const available = Math.min(this.spool.size, this.last + 1) - this.position;
      if (available > 0) return Math.min(max, available);
      if (this.spool.status === 'sealed') {
        if (this.options.end !== undefined) throw new Error(`the object ended before byte ${this.options.end}`);
        return 0;
      }
      await this.spool.whenAvailable(this.position + 1);
    }
  }

  /** Reads the next `length` bytes into `buffer`; true when they complete the read (they were held back until verified). */
  private async readChunk(buffer: Buffer, length: number): Promise<boolean> {
    let read = 0;
    while (read < length) {
      const n = await this.spool.readInto(buffer.subarray(read), this.position + read, length - read);
      if (n === 0) throw new Error('the spool file is shorter than what was written to it');
      read += n;
    }
    return this.advance(length);
  }

  /** Moves past `length` bytes; true when they complete the read (held back until verified). */
  private async advance(length: number): Promise<boolean> {
    this.position += length;
    const completes = this.position > this.last;
    if (completes) await (this.options.withholdUntil ?? this.spool.whenSealed());
    return completes;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.letGo();
    callback(err);
  }
}
