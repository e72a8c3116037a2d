/**
 * Waiting for background work (a job to run, a message to arrive, a download to get going) by polling what
 * it changes, never by sleeping a fixed time: returns `check`'s first truthy value, and fails naming `what`
 * once `timeoutMs` passed without one. Used by the e2e suites and by the specs and contracts in src/.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  { timeoutMs = 5_000, intervalMs = 10 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
