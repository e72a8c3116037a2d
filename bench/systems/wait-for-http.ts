import type { StartedProcess } from '../started-processes.js';

/** Polls `url` until it answers one of `statuses`; fails early (with `diagnostics()`) if `process` exits. */
export async function waitForHttp(
  url: string,
  statuses: readonly number[],
  process: StartedProcess,
  diagnostics: () => string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!process.running) {
      throw new Error(`${process.name} exited during startup (${String(await process.exited)}):\n${diagnostics()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (statuses.includes(res.status)) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${process.name} did not answer ${url} within ${timeoutMs} ms:\n${diagnostics()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
