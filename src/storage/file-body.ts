import { read } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable, type Writable } from 'node:stream';
import type { OpenBlobFile } from './open-blob-files.js';
import { sendFileToResponse, sendfileSocket, type SendfileMode } from './socket-sendfile.js';

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
 * Bytes `start..end` (inclusive) of an open stored object, as a stream (1 MiB reads) for whoever consumes
 * streams, and as `writeTo` for the HTTP edge. To an HTTP response on a plain TCP connection, with
 * `sendfile`, the kernel sends the pages itself (socket-sendfile.ts); otherwise two reused buffers
 * alternate, the next read runs while the socket sends the previous one, no stream stage in between. The
 * file is released (not closed: see OpenBlobFiles) once the body ends or is destroyed.
 */
export class FileBody extends Readable implements SelfWritingBody {
  private position: number;
  private released = false;
  /** Reads on the thread pool: the file is released only once they are back (its descriptor must stay open). */
  private readonly reads = new Set<Promise<void>>();

  constructor(
    private readonly file: OpenBlobFile,
    private readonly start: number,
    private readonly end: number,
    /** Send to an HTTP response's socket with the native addon when the socket allows it (BLOB_SENDFILE). */
    private readonly sendfile: SendfileMode = 'off',
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
    const buffer = Buffer.allocUnsafeSlow(length);
    this.readFully(buffer, this.position, length).then(
      () => {
        this.position += length;
        this.push(buffer);
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const release = () => this.release();
    if (this.reads.size > 0) void Promise.allSettled(this.reads).then(release);
    else release();
    callback(error);
  }

  /**
   * Each buffer's next read starts as soon as the socket has taken its bytes, so the thread pool reads
   * one buffer while this thread writes the other (a write to a local socket completes at once: waiting
   * for it before reading would leave one of the two idle at any moment).
   */
  async writeTo(out: Writable): Promise<void> {
    if (this.readableFlowing !== null || this.position !== this.start || this.destroyed) {
      throw new Error('this body is already being read as a stream');
    }
    const socket = await sendfileSocket(out, this.sendfile);
    if (socket) return this.sendFileTo(out as ServerResponse, socket);
    const slots = [new WriteSlot(READ_BUFFERS.take()), new WriteSlot(READ_BUFFERS.take())];
    const gone = clientGone(out);
    let next = this.position;
    const filling = new Set<WriteSlot>();
    /** The next bytes into `slot`, read once the socket has taken what it holds; undefined at the end. */
    const refill = (slot: WriteSlot): Promise<number> | undefined => {
      if (next > this.end) return undefined;
      const length = Math.min(slot.buffer.length, this.end - next + 1);
      const at = next;
      next += length;
      filling.add(slot);
      const filled = slot.free
        .then(() => {
          if (this.destroyed) throw new Error('the body was destroyed');
          return this.readFully(slot.buffer, at, length);
        })
        .then(() => length);
      filled.then(
        () => filling.delete(slot),
        () => undefined, // its buffer may still be being read into: never reused
      );
      return filled;
    };
    const pending = slots.map(refill);
    try {
      for (let turn = 0; ; turn++) {
        const reading = pending[turn & 1];
        if (!reading) break;
        const length = await Promise.race([reading, gone]);
        this.position += length;
        if (out.destroyed) throw new Error('the client closed the connection');
        slots[turn & 1].send(out, length);
        pending[turn & 1] = refill(slots[turn & 1]);
      }
      await Promise.race([Promise.all(slots.map((s) => s.free)), gone]);
      await endOf(out, gone);
    } finally {
      // A buffer the socket or a read may still hold is left to the garbage collector, never reused.
      for (const slot of slots) if (slot.idle && !filling.has(slot)) READ_BUFFERS.give(slot.buffer);
      this.destroy();
    }
  }

  /** The whole range with sendfile: no buffer, no read on this thread, one pool turn per socket-full. */
  private async sendFileTo(out: ServerResponse, socket: Socket): Promise<void> {
    const gone = clientGone(out);
    try {
      await sendFileToResponse(out, socket, this.file.fd, this.position, this.end - this.position + 1, this.sendfile);
      this.position = this.end + 1;
      await endOf(out, gone);
    } finally {
      // The native transfer has settled: it no longer uses the descriptor.
      this.destroy();
    }
  }

  /** Reads `length` bytes at `position` into the start of `buffer` (more than one read if the system returns fewer). */
  private readFully(buffer: Buffer, position: number, length: number): Promise<void> {
    const reading = new Promise<void>((resolve, reject) => {
      const readFrom = (offset: number) => {
        if (this.released) return reject(new Error('the stored object was released'));
        read(this.file.fd, buffer, offset, length - offset, position + offset, (err, bytesRead) => {
          if (err) return reject(err);
          if (bytesRead === 0) return reject(new Error(`the stored object ended ${this.end - position - offset + 1} bytes early`));
          if (offset + bytesRead < length) return readFrom(offset + bytesRead);
          resolve();
        });
      };
      readFrom(0);
    });
    this.reads.add(reading);
    const settled = () => this.reads.delete(reading);
    reading.then(settled, settled);
    return reading;
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.file.release();
  }
}

/** One of writeTo's two buffers: free once the socket has taken the bytes written from it. */
export class WriteSlot {
  free: Promise<void> = Promise.resolve();
  idle = true;

  constructor(readonly buffer: Buffer) {}

  send(out: Writable, length: number): void {
    this.sendPieces(out, [length === this.buffer.length ? this.buffer : this.buffer.subarray(0, length)]);
  }

  /** Writes `pieces` (this slot's buffer, or memory the caller keeps unchanged until `free`) in one go. */
  sendPieces(out: Writable, pieces: readonly Uint8Array[]): void {
    this.idle = false;
    this.free = writePieces(out, pieces).then(() => {
      this.idle = true;
    });
    this.free.catch(() => undefined);
  }
}

/** Writes `pieces` to `out` in one go (corked); resolves once the socket has taken the last of them. */
export function writePieces(out: Writable, pieces: readonly Uint8Array[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const last = pieces.length - 1;
    if (last < 0) return resolve();
    if (last > 0) out.cork();
    pieces.forEach((piece, i) => out.write(piece, i < last ? undefined : (err) => (err ? reject(err) : resolve())));
    if (last > 0) out.uncork();
  });
}

/** Rejects once the client goes away (`out` closes or errors); raced against each wait of a body's writer. */
export function clientGone(out: Writable): Promise<never> {
  const gone = new Promise<never>((_, reject) => {
    const onClose = () => reject(new Error('the client closed the connection'));
    out.once('close', onClose);
    out.once('error', onClose);
  });
  gone.catch(() => undefined);
  return gone;
}

/** Ends `out`; resolves once its last bytes are handed to the socket, rejects if the client goes first. */
export function endOf(out: Writable, gone: Promise<never>): Promise<void> {
  return Promise.race([new Promise<void>((resolve) => out.end(resolve)), gone]);
}
