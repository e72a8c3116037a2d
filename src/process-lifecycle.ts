import { ConfigValidationError } from './config/environment.js';

/** Boot failures end the process with one clear line on stderr and a non-zero exit, no stack trace. */
export function exitOnBootFailure(err: unknown): never {
  const message =
    err instanceof ConfigValidationError ? err.message : `Startup failed: ${describeBootError(err)}`;
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
 * Graceful shutdown is Nest's (enableShutdownHooks: stop accepting, drain responses, close pools);
 * this bounds it so a stuck stream cannot keep the process alive forever.
 */
export function installShutdownTimeout(timeoutMs: number): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      setTimeout(() => {
        process.stderr.write(`shutdown did not finish within ${timeoutMs} ms, exiting\n`);
        process.exit(1);
      }, timeoutMs).unref();
    });
  }
}
