import { createHash, Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';

const TAIL_READ_CHUNK = 256 * 1024;

/**
 * The local file a write lands in while it is open: it hashes what it stores and lets any number of
 * tail readers follow it. Readers share the spool's file handle (positional reads), so the file can be
 * renamed into place or unlinked while they read. The handle closes once the writer has released the
 * spool and every reader is done.
 */
export class BlobSpool {
  private readonly hash: Hash = createHash('sha256');
  private readonly changes = new EventEmitter().setMaxListeners(0);
  private written = 0;
  private state: 'open' | 'sealed' | 'aborted' = 'open';
  private abortReason: Error | undefined;
  private hexDigest: string | undefined;
  private readers = 0;
  private released = false;
  private closed: Promise<void> | undefined;

  private constructor(private readonly handle: FileHandle) {}

  /** Creates the file (it must not exist). */
  static async create(path: string): Promise<BlobSpool> {
    return new BlobSpool(await open(path, 'wx+'));
  }

  get size(): number {
    return this.written;
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

  /** No more bytes: tail readers end once they have read everything. */
  seal(): void {
    if (this.state !== 'open') return;
    this.state = 'sealed';
    this.changes.emit('change');
  }

  /**
   * The write failed or was cancelled: tail readers error with `reason`. Once sealed (verified), the
   * bytes stay readable whatever happens to the write afterwards.
   */
  abort(reason: Error): void {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.abortReason = reason;
    this.changes.emit('change');
  }

  /** The writer is done with the spool; the file handle closes when the last reader is. */
  async release(): Promise<void> {
    this.released = true;
    await this.closeWhenIdle();
  }

  /** A reader of the bytes from `from` on that follows the file until it is sealed or aborted. */
  openTailReader(from = 0): Readable {
    if (this.closed) throw new Error('the spool is closed');
    this.readers += 1;
    return new SpoolTailReader(this, from);
  }

  /** @internal for SpoolTailReader */
  readerState(): { size: number; state: 'open' | 'sealed' | 'aborted'; abortReason: Error | undefined } {
    return { size: this.written, state: this.state, abortReason: this.abortReason };
  }

  /** @internal for SpoolTailReader */
  async readAt(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await this.handle.read(buffer, 0, length, position);
    return bytesRead === length ? buffer : buffer.subarray(0, bytesRead);
  }

  /** @internal for SpoolTailReader: calls `listener` once on the next change; returns an unsubscribe. */
  onNextChange(listener: () => void): () => void {
    this.changes.once('change', listener);
    return () => this.changes.off('change', listener);
  }

  /** @internal for SpoolTailReader */
  detachReader(): void {
    this.readers -= 1;
    void this.closeWhenIdle();
  }

  private closeWhenIdle(): Promise<void> {
    if (!this.released || this.readers > 0) return Promise.resolve();
    this.closed ??= this.handle.close().catch(() => undefined);
    return this.closed;
  }
}

class SpoolTailReader extends Readable {
  private position: number;
  private reading = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly spool: BlobSpool,
    from: number,
  ) {
    super({ highWaterMark: TAIL_READ_CHUNK });
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

  /** Pushes what is available (until push() says stop), or waits for the next change. */
  private async pump(): Promise<void> {
    for (;;) {
      if (this.destroyed) return;
      const { size, state, abortReason } = this.spool.readerState();
      if (state === 'aborted') {
        this.destroy(abortReason);
        return;
      }
      if (this.position < size) {
        const chunk = await this.spool.readAt(this.position, Math.min(TAIL_READ_CHUNK, size - this.position));
        if (this.destroyed) return;
        if (chunk.byteLength === 0) throw new Error('the spool file is shorter than what was written to it');
        this.position += chunk.byteLength;
        if (!this.push(chunk)) return;
        continue;
      }
      if (state === 'sealed') {
        this.push(null);
        return;
      }
      await new Promise<void>((resolve) => {
        this.unsubscribe = this.spool.onNextChange(resolve);
      });
      this.unsubscribe = undefined;
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.unsubscribe?.();
    this.spool.detachReader();
    callback(err);
  }
}
