/**
 * Blob GET throughput where the registry answers 307 (BLOB_REDIRECT=presigned): each GET asks the
 * registry, then fetches the Location from the store, both on keep-alive connections (one per origin),
 * bytes counted. One unmeasured GET first, as blobGetRate does.
 */
import { Client } from 'undici';

/** MB/s (10^6 bytes per second) over `count` sequential redirected GETs of a blob of `size` bytes. */
export async function redirectedBlobGetRate(url: string, headers: Record<string, string>, size: number, count: number): Promise<number> {
  const clients = new Map<string, Client>();
  const clientFor = (origin: string) => {
    let client = clients.get(origin);
    if (!client) {
      client = new Client(origin, { bodyTimeout: 120_000, headersTimeout: 120_000 });
      clients.set(origin, client);
    }
    return client;
  };
  const once = async () => {
    const target = new URL(url);
    const answer = await clientFor(target.origin).request({ method: 'GET', path: `${target.pathname}${target.search}`, headers });
    await answer.body.dump();
    const location = answer.headers.location;
    if (answer.statusCode !== 307 || typeof location !== 'string') throw new Error(`GET ${url} -> ${answer.statusCode}, not a redirect`);
    const stored = new URL(location);
    const res = await clientFor(stored.origin).request({ method: 'GET', path: `${stored.pathname}${stored.search}` });
    let received = 0;
    for await (const chunk of res.body) received += (chunk as Buffer).length;
    if (res.statusCode !== 200 || received !== size)
      throw new Error(`GET ${stored.origin}${stored.pathname} -> ${res.statusCode}, ${received} of ${size} bytes`);
  };
  try {
    await once();
    const started = performance.now();
    for (let i = 0; i < count; i++) await once();
    const seconds = (performance.now() - started) / 1000;
    return (size * count) / seconds / 1e6;
  } finally {
    await Promise.all([...clients.values()].map((c) => c.close()));
  }
}
