import { Transform, TransformCallback } from 'node:stream';

/**
 * Holds back the most recent chunk until its source ends cleanly. With a Content-Length response, a
 * client has only received the whole body once the last byte arrives: by withholding it until the
 * digest has been verified upstream of this transform, a mismatch (which errors the pipeline) leaves
 * the client with a short, failed response instead of complete wrong bytes.
 */
export class WithheldTail extends Transform {
  private pending?: Buffer;

  /** With `until`, the last chunk also waits for it (a range of a fill whose digest is not verified yet). */
  constructor(private readonly until?: Promise<unknown>) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const previous = this.pending;
    this.pending = chunk;
    callback(null, previous);
  }

  override _flush(callback: TransformCallback): void {
    const last = this.pending;
    this.pending = undefined;
    if (!this.until) return callback(null, last);
    this.until.then(
      () => callback(null, last),
      (err: Error) => callback(err),
    );
  }
}

/** Passes through bytes [0, length) and ends; for slicing a range out of a longer stream. */
export class ByteLimit extends Transform {
  private remaining: number;

  constructor(
    length: number,
    private readonly onLimit?: () => void,
  ) {
    super();
    this.remaining = length;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.remaining <= 0) {
      callback();
      return;
    }
    const part = chunk.length <= this.remaining ? chunk : chunk.subarray(0, this.remaining);
    this.remaining -= part.length;
    this.push(part);
    if (this.remaining === 0) {
      this.push(null);
      this.onLimit?.();
    }
    callback();
  }
}

/** Skips the first `offset` bytes of a stream (an upstream that ignored our Range header). */
export class ByteSkip extends Transform {
  private toSkip: number;

  constructor(offset: number) {
    super();
    this.toSkip = offset;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.toSkip >= chunk.length) {
      this.toSkip -= chunk.length;
      callback();
      return;
    }
    const rest = chunk.subarray(this.toSkip);
    this.toSkip = 0;
    callback(null, rest);
  }
}
