import { createHash } from 'node:crypto';
import { getSystemErrorName } from 'node:util';
import { nativeAddon, type NativeAddon } from './native-addon.js';

/**
 * The SHA-256 of a blob as it is stored, fed one batch at a time. Every byte a cache fill stores is hashed
 * before the entry goes live: on the event loop that costs ~0.6 ms per MiB, a third of a fill's
 * main-thread time, which every other request of the process waits behind. With the native addon the
 * hashing runs on libuv's thread pool, next to the batch's file write.
 */
export interface BlobHasher {
  /**
   * Hashes `chunks` after everything hashed before; resolves once they are. One update at a time: await
   * it before the next. The chunks' bytes must not change until it settles.
   */
  update(chunks: readonly Uint8Array[]): Promise<void>;
  /**
   * Writes `chunks` at `position` of the open file `fd`, then hashes them as `update` does, in one trip to
   * the thread pool (only a hasher that runs there has it). Nothing is hashed when the write fails.
   */
  writeAndUpdate?(fd: number, position: number, chunks: readonly Uint8Array[]): Promise<void>;
  /** Hex SHA-256 of everything hashed; call it once, after the last update settled. */
  digest(): string;
}

/** Whether blobs can be hashed off the event loop (the native addon was built by `npm install`). */
export const POOL_HASHING_AVAILABLE = nativeAddon !== undefined;

/** Where a hasher hashes: `pool` (libuv's thread pool, needs the addon) or `inline` (on the event loop). */
export type HashingPlace = 'pool' | 'inline';

/** A hasher for one blob: on the thread pool when this build can, otherwise on the event loop. */
export function createBlobHasher(place: HashingPlace = POOL_HASHING_AVAILABLE ? 'pool' : 'inline'): BlobHasher {
  if (place === 'inline') return new InlineBlobHasher();
  if (!nativeAddon) throw new Error('hashing on the thread pool needs the native addon (npm install builds it)');
  return new PoolBlobHasher(nativeAddon);
}

/** node:crypto on the event loop. */
class InlineBlobHasher implements BlobHasher {
  private readonly hash = createHash('sha256');

  update(chunks: readonly Uint8Array[]): Promise<void> {
    for (const chunk of chunks) this.hash.update(chunk);
    return Promise.resolve();
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** OpenSSL's SHA-256 on libuv's thread pool (native/sendfile/sha256.c). */
class PoolBlobHasher implements BlobHasher {
  private readonly handle: object;

  constructor(private readonly addon: NativeAddon) {
    this.handle = addon.sha256Create();
  }

  update(chunks: readonly Uint8Array[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.addon.sha256Update(this.handle, chunks, (failed) => {
        if (failed) reject(new Error('hashing the blob failed'));
        else resolve();
      });
    });
  }

  writeAndUpdate(fd: number, position: number, chunks: readonly Uint8Array[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.addon.sha256Update(
        this.handle,
        chunks,
        (failed, errno) => {
          if (errno) reject(writeError(errno, fd));
          else if (failed) reject(new Error('hashing the blob failed'));
          else resolve();
        },
        fd,
        position,
      );
    });
  }

  digest(): string {
    return this.addon.sha256Digest(this.handle);
  }
}

/** A failed write as node:fs reports one: the errno's code (EIO, ENOSPC...) and a message naming it. */
function writeError(errno: number, fd: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(-errno);
  const err: NodeJS.ErrnoException = new Error(`${code}: writing to the blob's spool file (fd ${fd}) failed`);
  err.code = code;
  err.errno = -errno;
  err.syscall = 'pwritev';
  return err;
}
