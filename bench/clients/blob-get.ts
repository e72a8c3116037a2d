/**
 * Blob GET throughput: sequential GETs of one blob on one keep-alive connection, bytes counted and
 * discarded. The client is curl when installed (one process, `-o /dev/null` per URL, the connection
 * reused), so the client costs little CPU on a machine it shares with the systems measured; otherwise an
 * undici loop in this process. One unmeasured GET first. With curl the time is the sum of curl's own
 * per-transfer times (`%{time_total}`: from the request to the last byte), so starting the curl process
 * is not counted; it would weigh more on a row with fewer GETs.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { Client } from 'undici';

const run = promisify(execFile);

export function blobGetTool(): 'curl' | 'undici' {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return 'curl';
  } catch {
    return 'undici';
  }
}

/** MB/s (10^6 bytes per second) over `count` sequential GETs of a blob of `size` bytes. */
export async function blobGetRate(url: string, headers: Record<string, string>, size: number, count: number): Promise<number> {
  return blobGetTool() === 'curl' ? curlRate(url, headers, size, count) : undiciRate(url, headers, size, count);
}

async function curlRate(url: string, headers: Record<string, string>, size: number, count: number): Promise<number> {
  const headerArgs = Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const get = async (times: number) => {
    const args = ['-s', '--fail', '-w', '%{size_download} %{time_total}\n', ...headerArgs];
    for (let i = 0; i < times; i++) args.push('-o', '/dev/null', url);
    const { stdout } = await run('curl', args, { maxBuffer: 1024 * 1024 });
    const transfers = stdout
      .trim()
      .split('\n')
      .map((line) => line.split(' ').map(Number));
    if (transfers.length !== times || transfers.some(([bytes]) => bytes !== size)) {
      throw new Error(`GET ${url}: received ${transfers.map(([bytes]) => bytes).join(', ')} bytes, expected ${size} each`);
    }
    return transfers.reduce((sum, [, seconds]) => sum + seconds, 0);
  };
  await get(1);
  const seconds = await get(count);
  return (size * count) / seconds / 1e6;
}

async function undiciRate(url: string, headers: Record<string, string>, size: number, count: number): Promise<number> {
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

/** One transfer of `timedBlobGets`: seconds to the first byte of the answer, and to its last. */
export interface BlobTransfer {
  firstByteSeconds: number;
  totalSeconds: number;
}

/**
 * GETs each URL once, in order, on one keep-alive connection (curl, or undici without it), checking each
 * answer's size: the cold blob row, where every URL is a blob the system has not cached.
 */
export async function timedBlobGets(urls: readonly string[], headers: Record<string, string>, sizes: readonly number[]): Promise<BlobTransfer[]> {
  const transfers = blobGetTool() === 'curl' ? await curlTransfers(urls, headers) : await undiciTransfers(urls, headers);
  if (transfers.length !== urls.length) throw new Error(`${transfers.length} transfers reported for ${urls.length} GETs`);
  transfers.forEach(({ bytes }, i) => {
    if (bytes !== sizes[i]) throw new Error(`GET ${urls[i]}: received ${bytes} bytes, expected ${sizes[i]}`);
  });
  return transfers.map(({ firstByteSeconds, totalSeconds }) => ({ firstByteSeconds, totalSeconds }));
}

async function curlTransfers(urls: readonly string[], headers: Record<string, string>): Promise<Array<BlobTransfer & { bytes: number }>> {
  const args = ['-s', '--fail', '-w', '%{size_download} %{time_starttransfer} %{time_total}\n'];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  for (const url of urls) args.push('-o', '/dev/null', url);
  const { stdout } = await run('curl', args, { maxBuffer: 1024 * 1024 });
  return stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [bytes, firstByteSeconds, totalSeconds] = line.split(' ').map(Number);
      return { bytes, firstByteSeconds, totalSeconds };
    });
}

async function undiciTransfers(urls: readonly string[], headers: Record<string, string>): Promise<Array<BlobTransfer & { bytes: number }>> {
  const client = new Client(new URL(urls[0]).origin, { bodyTimeout: 120_000, headersTimeout: 120_000 });
  try {
    const transfers: Array<BlobTransfer & { bytes: number }> = [];
    for (const url of urls) {
      const target = new URL(url);
      const started = performance.now();
      const res = await client.request({ method: 'GET', path: `${target.pathname}${target.search}`, headers });
      const firstByteSeconds = (performance.now() - started) / 1000;
      let bytes = 0;
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
      if (res.statusCode !== 200) throw new Error(`GET ${url} -> ${res.statusCode}`);
      transfers.push({ bytes, firstByteSeconds, totalSeconds: (performance.now() - started) / 1000 });
    }
    return transfers;
  } finally {
    await client.close();
  }
}
