import type { INestApplicationContext, LoggerService } from '@nestjs/common';
import { setFlagsFromString } from 'node:v8';
import { ConfigValidationError } from './config/environment.js';
import { trackShutdown } from './shutdown-progress.js';

/**
 * The old generation may grow to twice what a full GC leaves live (`--heap-growing-percent=100`), set
 * at startup by both processes, however they are launched.
 *
 * Why: V8 starts incremental marking whenever the old generation's room left before its limit is smaller
 * than the young generation's capacity. Streaming blobs grows the young generation to its maximum (2 x 16
 * MiB); after the first full GCs V8 sets the limit at ~1.45 x the live heap (~55 MiB here), which leaves
 * ~24 MiB. From then on it marked without pause: a full mark-compact every ~25 MiB streamed, the GC
 * helper threads busier than the main thread, a cold pull twice the CPU. Whether a process got there
 * depended on what it had served (issue 16's "two modes"). With the factor at 2 the room is the live
 * heap itself, more than the young generation can hold. Cost: the old generation may hold up to one
 * more live heap's worth of garbage between full GCs (the RSS rows of `npm run bench` measure it).
 */
export function tuneGarbageCollector(): void {
  setFlagsFromString('--heap-growing-percent=100');
}

/** The block tuneMemoryAllocator frees: glibc then keeps up to twice this much free heap before trimming. */
export const ALLOCATOR_WARM_BLOCK = 8 * 1024 * 1024;

/**
 * Frees one 8 MiB block at startup, so glibc's allocator keeps freed memory instead of handing it back to
 * the kernel and faulting it in again, page by page, on the next read.
 *
 * Why: every socket read allocates its buffer with malloc (64 KiB), and a garbage collection frees
 * megabytes of them at once. glibc returns free memory at the top of its heap to the kernel once it
 * exceeds the trim threshold, 128 KiB until the process frees a block larger than its mmap threshold
 * (glibc then raises both: mmap threshold = that block, trim threshold = twice it). A process that had
 * not freed such a block faulted in 25-45 fresh pages per MiB received; an upstream fill cost 1.3-2.4 ms
 * of CPU per MiB in undici instead of 1.0-1.4 (measured here, `/proc/self/stat` minflt and CPU time).
 * Whether a process had freed one by chance depended on what it had done, another source of instances
 * that differ. Cost: up to 16 MiB of free heap stays resident. Setting GLIBC_TUNABLES
 * (glibc.malloc.trim_threshold, glibc.malloc.mmap_threshold) fixes the thresholds instead; glibc then
 * ignores this. Other allocators (musl) are unaffected either way.
 */
export function tuneMemoryAllocator(): void {
  // Larger than the mmap threshold, so malloc maps it; freeing it (the first scavenge collects the
  // ArrayBuffer, during boot) is what moves the thresholds. Written to, so it is really allocated.
  const block = Buffer.allocUnsafeSlow(ALLOCATOR_WARM_BLOCK);
  block.fill(0, 0, 1);
}

/** Boot failures end the process with one clear line on stderr and a non-zero exit, no stack trace. */
export function exitOnBootFailure(err: unknown): never {
  const message = err instanceof ConfigValidationError ? err.message : `Startup failed: ${describeBootError(err)}`;
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function describeBootError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length) return describeBootError(err.errors[0]);
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const address = (err as { address?: string; port?: number }).address;
    const port = (err as { port?: number }).port;
    if (code === 'ECONNREFUSED' && address) return `cannot connect to ${address}:${port} (${code})`;
    return err.message.split('\n')[0];
  }
  return String(err);
}

/** How often a shutdown that takes longer says what it still waits for. */
const SHUTDOWN_PROGRESS_EVERY_MS = 5000;

/**
 * Graceful shutdown on SIGTERM/SIGINT: stop accepting, let in-flight responses and fills finish,
 * drain jobs, close pools (Nest's shutdown hooks), then exit 0. Bounded by SHUTDOWN_TIMEOUT_MS so a
 * stuck stream cannot keep the process alive forever (exit 1 then). A shutdown that takes longer than
 * a few seconds logs what it still waits for (ShutdownProgress), and so does the timeout.
 */
export function installGracefulShutdown(app: INestApplicationContext, timeoutMs: number, logger: LoggerService): void {
  const progress = trackShutdown(app);
  let closing = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      logger.log(`${signal}: shutting down (draining in-flight work, at most ${timeoutMs} ms)`, 'Shutdown');
      setInterval(() => {
        logger.warn(`shutting down: still waiting for ${progress.describe()}`, 'Shutdown');
      }, SHUTDOWN_PROGRESS_EVERY_MS).unref();
      setTimeout(() => {
        logger.error(`shutdown did not finish within ${timeoutMs} ms, exiting; it was waiting for ${progress.describe()}`, undefined, 'Shutdown');
        process.exit(1);
      }, timeoutMs).unref();
      app.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error(`shutdown failed: ${(err as Error).message}`, (err as Error).stack, 'Shutdown');
          process.exit(1);
        },
      );
    });
  }
}

/** Node and library warnings (deprecations and the like) become log lines instead of raw stderr text. */
export function routeWarningsToLog(logger: LoggerService): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    logger.warn(`${warning.name}: ${warning.message}`, 'ProcessWarning');
  });
}
