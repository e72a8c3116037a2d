import { createRequire } from 'node:module';

/**
 * native/sendfile, the byte path's native addon (`npm install` builds it; without a compiler the app
 * works without it): sendfile(2) from a file to a socket (sendfile.c) and SHA-256 on libuv's thread pool
 * (sha256.c). Each calls back on the event loop; what may wait for the disk runs on the thread pool.
 */
export interface NativeAddon {
  /** `pooled`: how many of the `sent` bytes the thread pool sent (they were not in the page cache). */
  sendFile(
    socketFd: number,
    fileFd: number,
    offset: number,
    length: number,
    done: (errno: number, sent: number, pooled: number) => void,
    copy?: boolean,
  ): object;
  cancel(transfer: object): void;
  sha256Create(): object;
  /**
   * One update at a time per hasher; the chunks must not change until `done` runs. With `fd` and
   * `position`, the chunks are written there first (pwritev), in the same trip to the thread pool;
   * `errno` is that write's error, 0 when it wrote them all.
   */
  sha256Update(hasher: object, chunks: readonly Uint8Array[], done: (failed: boolean, errno: number) => void, fd?: number, position?: number): void;
  /** Hex digest; only once every update has called back, and only once. */
  sha256Digest(hasher: object): string;
}

const ADDON_PATHS = [
  '../../native/sendfile/build/Release/sendfile.node', // src/storage (tests)
  '../../../native/sendfile/build/Release/sendfile.node', // dist/src/storage
];

function loadAddon(): NativeAddon | undefined {
  const require = createRequire(import.meta.url);
  for (const path of ADDON_PATHS) {
    try {
      const addon = require(path) as Partial<NativeAddon>;
      // A build from before a function was added is not this addon: the app works without it.
      if (typeof addon.sendFile === 'function' && typeof addon.sha256Update === 'function') return addon as NativeAddon;
    } catch {
      // not built here (npm install builds it; without a compiler, blobs are served with reads and writes
      // and hashed on the event loop)
    }
  }
  return undefined;
}

/** The addon, when this install built it. */
export const nativeAddon: NativeAddon | undefined = loadAddon();
