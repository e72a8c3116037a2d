import { createHash, Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';

const TAIL_READ_CHUNK = 256 * 1024;

export type BlobSpoolStatus = 'open' | 'sealed' | 'aborted';

/**
 * The local file a write lands in while it is open: it hashes what it stores and lets tail readers
 * (and the S3 part uploader) follow it. They share the spool's file handle with positional reads, so
 * the file can be renamed into place or unlinked while they read. The handle closes once the writer
 * has released the spool and every reader has let go of it.
 */
export class BlobSpool {
  private readonly hash: Hash = createHash('sha256');
  private readonly changes = new EventEmitter().setMaxListeners(0);
  private written = 0;
  private state: BlobSpoolStatus = 'open';
  private reason: Error | undefined;
  private hexDigest: string | undefined;
  private holders = 1; // the writer
  private released = false;
  private closed: Promise<void> | undefined;

  private constructor(private readonly handle: FileHandle) {}

  /** Creates the file (it must not exist yet). */
  static async create(path: string): Promise<BlobSpool> {
    return new BlobSpool(await open(path, 'wx+'));
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

  /** Stores a chunk at the end of the file. Callers append one chunk at a time. */
  async append(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw new Error(`cannot append to a ${this.state} spool`);
    let offset = 0;
    while (offset < chunk.byteLength) {
      const { bytesWritten } = await this.handle.write(chunk, offset, chunk.byteLength - offset, this.written + offset);
      offset += bytesWritten;
    }
    this.hash.update(chunk);
    this.written += chunk.byteLength;
    this.changes.emit('change');
  }

  /** `sha256:<hex>` of everything appended; appending after this is an error. */
  digest(): string {
    this.hexDigest ??= this.hash.digest('hex');
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
    this.changes.emit('change');
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
    this.letGo();
    await this.closed;
  }

  /** Streams the bytes from `from` on, following the file until it is sealed (end) or aborted (error). */
  openTailReader(from = 0): Readable {
    return new SpoolTailReader(this, from);
  }

  private letGo(): void {
    this.holders -= 1;
    if (this.holders === 0) this.closed = this.handle.close().catch(() => undefined);
  }
}

class SpoolTailReader extends Readable {
  private readonly letGo: () => void;
  private position: number;
  private reading = false;

  constructor(
    private readonly spool: BlobSpool,
    from: number,
  ) {
    super({ highWaterMark: TAIL_READ_CHUNK });
    this.letGo = spool.hold();
    this.position = from;
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
      if (this.spool.status === 'aborted') {
        this.destroy(this.spool.abortReason);
        return;
      }
      const available = this.spool.size - this.position;
      if (available > 0) {
        const chunk = Buffer.allocUnsafe(Math.min(TAIL_READ_CHUNK, available));
        const read = await this.spool.readInto(chunk, this.position);
        if (this.destroyed) return;
        if (read === 0) throw new Error('the spool file is shorter than what was written to it');
        this.position += read;
        if (!this.push(read === chunk.byteLength ? chunk : chunk.subarray(0, read))) return;
        continue;
      }
      if (this.spool.status === 'sealed') {
        this.push(null);
        return;
      }
      await this.spool.whenAvailable(this.position + 1);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.letGo();
    callback(err);
  }
}
