import type { FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';

/**
 * A body that can write itself to a socket faster than a stream pipe can (the HTTP edge asks with
 * `isSelfWriting` and falls back to piping the stream).
 */
export interface SelfWritingBody {
  /** Writes every byte to `out` and ends it; rejects (leaving `out` to the caller) when it cannot. */
  writeTo(out: Writable): Promise<void>;
}

export function isSelfWriting(body: unknown): body is SelfWritingBody & Readable {
  return body instanceof Readable && typeof (body as Partial<SelfWritingBody>).writeTo === 'function';
}

/** Reads of a stored object are this large: 40 syscalls for a 40 MiB layer instead of 640. */
export const FILE_READ_SIZE = 1024 * 1024;

/**
 * Buffers for `FileBody.writeTo`, reused across responses. A buffer goes back only once the socket has
 * taken its bytes (the write callback), so a served blob allocates nothing and the garbage collector has
 * nothing to do; at most `MAX_IDLE` wait here between responses.
 */
export class ReadBuffers {
  private static readonly MAX_IDLE = 16;
  private readonly idle: Buffer[] = [];

  take(): Buffer {
    return this.idle.pop() ?? Buffer.allocUnsafeSlow(FILE_READ_SIZE);
  }

  give(buffer: Buffer): void {
    if (this.idle.length < ReadBuffers.MAX_IDLE) this.idle.push(buffer);
  }
}

export const READ_BUFFERS = new ReadBuffers();

/**
 * Bytes `start..end` (inclusive) of an open file, as a stream (1 MiB reads) for whoever consumes
 * streams, and as `writeTo` for the HTTP edge: two reused buffers alternate, the next read runs while
 * the socket sends the previous one, no stream stage in between.
 */
export class FileBody extends Readable implements SelfWritingBody {
  private position: number;
  private closing?: Promise<void>;

  constructor(
    private readonly handle: FileHandle,
    private readonly start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: FILE_READ_SIZE });
    this.position = start;
  }

  get length(): number {
    return this.end - this.start + 1;
  }

  override _read(size: number): void {
    const length = Math.min(Math.max(size, FILE_READ_SIZE), this.end - this.position + 1);
    if (length <= 0) {
      this.push(null);
      return;
    }
    this.handle.read(Buffer.allocUnsafeSlow(length), 0, length, this.position).then(
      ({ bytesRead, buffer }) => {
        if (bytesRead === 0) {
          this.destroy(new Error(`the stored object ended ${this.end - this.position + 1} bytes early`));
          return;
        }
        this.position += bytesRead;
        this.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.close().then(
      () => callback(error),
      (err: Error) => callback(error ?? err),
    );
  }

  async writeTo(out: Writable): Promise<void> {
    if (this.readableFlowing !== null || this.position !== this.start || this.destroyed) {
      throw new Error('this body is already being read as a stream');
    }
    const slots = [new WriteSlot(READ_BUFFERS.take()), new WriteSlot(READ_BUFFERS.take())];
    const gone = new Promise<never>((_, reject) => {
      const onClose = () => reject(new Error('the client closed the connection'));
      out.once('close', onClose);
      out.once('error', onClose);
    });
    gone.catch(() => undefined);
    try {
      for (let turn = 0; this.position <= this.end; turn++) {
        const slot = slots[turn & 1];
        await Promise.race([slot.free, gone]);
        const length = Math.min(slot.buffer.length, this.end - this.position + 1);
        const { bytesRead } = await this.handle.read(slot.buffer, 0, length, this.position);
        if (bytesRead === 0) throw new Error(`the stored object ended ${this.end - this.position + 1} bytes early`);
        this.position += bytesRead;
        if (out.destroyed) throw new Error('the client closed the connection');
        slot.send(out, bytesRead);
      }
      await Promise.race([Promise.all(slots.map((s) => s.free)), gone]);
      await Promise.race([new Promise<void>((resolve) => out.end(resolve)), gone]);
    } finally {
      // A buffer the socket may still hold is left to the garbage collector, never reused.
      for (const slot of slots) if (slot.idle) READ_BUFFERS.give(slot.buffer);
      await this.close();
      this.destroy();
    }
  }

  private close(): Promise<void> {
    return (this.closing ??= this.handle.close().catch(() => undefined));
  }
}

/** One of writeTo's two buffers: free once the socket has taken the bytes written from it. */
export class WriteSlot {
  free: Promise<void> = Promise.resolve();
  idle = true;

  constructor(readonly buffer: Buffer) {}

  send(out: Writable, length: number): void {
    this.idle = false;
    this.free = new Promise<void>((resolve, reject) => {
      out.write(length === this.buffer.length ? this.buffer : this.buffer.subarray(0, length), (err) => {
        if (err) return reject(err);
        this.idle = true;
        resolve();
      });
    });
    this.free.catch(() => undefined);
  }
}
