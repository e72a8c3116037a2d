import { Readable } from 'node:stream';
import type { CacheEntry } from '../cache-entries/cache-entry.entity.js';
import type { BlobWriter } from '../storage/blob-store.js';
import type { UpstreamError } from '../upstreams/client/upstream-error.js';
import type { FillHolder } from './fill-lock.js';

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
 * How asking one upstream for one blob turned out, as the requests that wait on it see it:
 * - `fill`: the download runs here; read the growing object;
 * - `stored`: another fill committed it between our cache lookup and our claim: serve the stored object;
 * - `remote`: another replica holds the fill lease; follow it over its fill route;
 * - `not-here`: the upstream answered 401/403/404: ask the next upstream;
 * - `failed`: the upstream could not answer (down, timeout, 5xx, 429);
 * - `uncacheable`: no length, or over MAX_CACHED_FILE_SIZE: each request streams it through itself.
 */
export type FillStart =
  | { kind: 'fill'; fill: BlobFill }
  | { kind: 'stored'; entry: CacheEntry }
  | { kind: 'remote'; holder: FillHolder }
  | { kind: 'not-here' }
  | { kind: 'failed'; error: UpstreamError }
  | { kind: 'uncacheable' };

/** A start being decided; the one request that decides it settles it. */
export interface PendingFillStart {
  readonly started: Promise<FillStart>;
  settle(start: FillStart): void;
}

/**
 * The fill coordinator of this process, keyed by (upstream, relative path). The first request for a
 * key opens it (synchronously, before any await) and decides how it starts: it claims the cross-replica
 * lease and asks the upstream. Every concurrent request for the key, from any registry that has that
 * upstream, waits for that start and follows it; nobody asks the upstream a second time. The key stays
 * open while its fill runs; other replicas reach it by the lease token (`byToken`).
 */
export class InflightBlobFills {
  private readonly starts = new Map<string, Promise<FillStart>>();
  private readonly tokens = new Map<string, Promise<FillStart>>();
  private readonly fills = new Map<string, BlobFill>();
  private readonly settling = new Set<Promise<void>>();

  static key(upstreamId: number, relativePath: string): string {
    return `${upstreamId} ${relativePath}`;
  }

  /** The start of `key` if a request of this process is deciding or running it. */
  find(key: string): Promise<FillStart> | undefined {
    return this.starts.get(key);
  }

  /** The fill of `key` running in this process, once it has started. */
  running(key: string): BlobFill | undefined {
    return this.fills.get(key);
  }

  /** The start announced under a lease token, for followers on other replicas. */
  byToken(token: string): Promise<FillStart> | undefined {
    return this.tokens.get(token);
  }

  /**
   * Opens `key` for the caller to decide; reachable by `token` until it ends. Followers see it at once.
   * The key closes when the start is not a fill, or when the fill settles. The caller checks find(key)
   * first, with no await in between.
   */
  open(key: string, token: string): PendingFillStart {
    let resolve!: (start: FillStart) => void;
    const started = new Promise<FillStart>((r) => (resolve = r));
    this.starts.set(key, started);
    this.tokens.set(token, started);
    let fill: BlobFill | undefined;
    const close = () => {
      if (this.starts.get(key) === started) this.starts.delete(key);
      if (fill && this.fills.get(key) === fill) this.fills.delete(key);
      this.tokens.delete(token);
    };
    return {
      started,
      settle: (start) => {
        resolve(start);
        if (start.kind !== 'fill') return close();
        fill = start.fill;
        this.fills.set(key, fill);
        const settled = fill.done.then(close, close);
        this.settling.add(settled);
        void settled.then(() => this.settling.delete(settled));
      },
    };
  }

  /** What drain() waits for: starts being decided and fills running (a few named, with their progress). */
  describe(): string | undefined {
    const deciding = [...this.starts.keys()].filter((key) => !this.fills.has(key));
    const running = [...this.fills.values()];
    if (deciding.length === 0 && running.length === 0 && this.settling.size === 0) return undefined;
    const named = running.slice(0, 3).map((fill) => `${fill.key} at ${fill.writer.bytesWritten} of ${fill.size} bytes`);
    const more = running.length > named.length ? `, ${running.length - named.length} more` : '';
    return `${deciding.length} fill start(s) being decided${deciding.length ? ` (${deciding.slice(0, 3).join(', ')})` : ''}, ${running.length} fill(s) running${named.length ? `: ${named.join(', ')}${more}` : ''}, ${this.settling.size} settling`;
  }

  /** Waits until no start is being decided and no fill runs (graceful shutdown), ignoring their outcome. */
  async drain(): Promise<void> {
    while (this.starts.size > 0 || this.settling.size > 0) {
      await Promise.allSettled([...this.starts.values(), ...this.settling]);
    }
  }
}

/**
 * Bytes [start, end] of a fill, streamed as they arrive. The last chunk is held until the commit has
 * verified the whole blob, for a range too, so no client ever completes a body that turns out wrong.
 * Destroying the returned stream (a client hanging up) lets go of the growing object.
 */
export function readFill(fill: BlobFill, start: number, end: number): Readable {
  // The whole blob's last chunk waits for the digest check; a range's for the entry (fill.done) too.
  const whole = end >= fill.size - 1;
  return fill.writer.openTailReader(start, { end: Math.min(end, fill.size - 1), withholdUntil: whole ? undefined : fill.done });
}
