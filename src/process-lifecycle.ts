import type { INestApplicationContext, LoggerService } from '@nestjs/common';
import { ConfigValidationError } from './config/environment.js';

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

/**
 * Graceful shutdown on SIGTERM/SIGINT: stop accepting, let in-flight responses and fills finish,
 * drain jobs, close pools (Nest's shutdown hooks), then exit 0. Bounded by SHUTDOWN_TIMEOUT_MS so a
 * stuck stream cannot keep the process alive forever (exit 1 then).
 */
export function installGracefulShutdown(app: INestApplicationContext, timeoutMs: number, logger: LoggerService): void {
  let closing = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      logger.log(`${signal}: shutting down (draining in-flight work, at most ${timeoutMs} ms)`, 'Shutdown');
      setTimeout(() => {
        logger.error(`shutdown did not finish within ${timeoutMs} ms, exiting`, undefined, 'Shutdown');
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
