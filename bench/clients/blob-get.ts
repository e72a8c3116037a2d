/**
 * Blob GET throughput: sequential GETs of one blob on a keep-alive connection, bytes counted (not
 * buffered, not hashed: the client should not be the bottleneck). One unmeasured GET first.
 */
import { Client } from 'undici';

/** MB/s (10^6 bytes per second) over `count` sequential GETs of a blob of `size` bytes. */
export async function blobGetRate(url: string, headers: Record<string, string>, size: number, count: number): Promise<number> {
  const target = new URL(url);
  const client = new Client(target.origin, { bodyTimeout: 120_000, headersTimeout: 120_000 });
  const path = `${target.pathname}${target.search}`;
  const once = async () => {
    const res = await client.request({ method: 'GET', path, headers });
    let received = 0;
    for await (const chunk of res.body) received += (chunk as Buffer).length;
    if (res.statusCode !== 200 || received !== size) {
      throw new Error(`GET ${url} -> ${res.statusCode}, ${received} of ${size} bytes`);
    }
  };
  try {
    await once();
    const started = performance.now();
    for (let i = 0; i < count; i++) await once();
    const seconds = (performance.now() - started) / 1000;
    return (size * count) / seconds / 1e6;
  } finally {
    await client.close();
  }
}
