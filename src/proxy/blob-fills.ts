import { Readable } from 'node:stream';
import type { BlobWriter } from '../storage/blob-store.js';
import { ByteLimit, WithheldTail } from './withheld-tail.js';

/** A blob download from an upstream into the blob store that clients can read while it grows. */
export interface BlobFill {
  readonly key: string;
  readonly upstreamId: number;
  readonly digest: string;
  readonly size: number;
  readonly contentType: string;
  readonly writer: BlobWriter;
  /** Settles when the object is committed and its cache entry recorded (rejects on any failure). */
  readonly done: Promise<void>;
}

/**
 * The fills in progress in this process, by (upstream, relative path). A miss that finds one here
 * follows it: it reads the growing temporary object from the position it needs, instead of asking
 * the upstream a second time (CONVENTIONS: followers read the growing temp file).
 */
export class InflightBlobFills {
  private readonly fills = new Map<string, BlobFill>();

  static key(upstreamId: number, relativePath: string): string {
    return `${upstreamId} ${relativePath}`;
  }

  get size(): number {
    return this.fills.size;
  }

  find(upstreamIds: readonly number[], relativePath: string): BlobFill | undefined {
    for (const id of upstreamIds) {
      const fill = this.fills.get(InflightBlobFills.key(id, relativePath));
      if (fill) return fill;
    }
    return undefined;
  }

  /** Registers a fill until it settles. */
  track(fill: BlobFill): void {
    this.fills.set(fill.key, fill);
    const forget = () => {
      if (this.fills.get(fill.key) === fill) this.fills.delete(fill.key);
    };
    fill.done.then(forget, forget);
  }

  has(key: string): boolean {
    return this.fills.has(key);
  }

  /** Waits for every fill in progress (graceful shutdown), ignoring their outcome. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.fills.values()].map((f) => f.done));
  }
}

/** Bytes [start, end] of a fill, streamed as they arrive; ends only after the commit verified them. */
export function readFill(fill: BlobFill, start: number, end: number): Readable {
  const tail = fill.writer.openTailReader(start);
  if (end >= fill.size - 1) {
    // The last chunk is released only once the commit has verified the digest.
    const withheld = new WithheldTail();
    tail.on('error', (err) => withheld.destroy(err));
    return tail.pipe(withheld);
  }
  const limit = new ByteLimit(end - start + 1, () => tail.destroy());
  tail.on('error', (err) => limit.destroy(err));
  return tail.pipe(limit);
}
