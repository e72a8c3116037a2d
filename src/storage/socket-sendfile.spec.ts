import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { Client } from 'undici';
import { blobContentPath } from './blob-store.js';
import type { SelfWritingBody } from './file-body.js';
import { FilesystemBlobStoreDriver } from './filesystem-blob-store.driver.js';
import { loopbackCopies, SENDFILE_AVAILABLE, sendfileStats } from './socket-sendfile.js';

const BIG = 24 * 1024 * 1024;

interface Served {
  /** How each response's writeTo settled, in order. */
  results: Promise<string>[];
}

/**
 * An HTTP server that answers every GET or HEAD with the stored object `digest` (Range too), written by the
 * body's writeTo, as the pull controller does.
 */
function serve(store: FilesystemBlobStoreDriver, digest: string, size: number, served: Served): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const result = (async () => {
      const body = (await store.createReadStream(digest, range ? { start: Number(range[1]), end: Number(range[2]) } : undefined)) as unknown as SelfWritingBody;
      const length = range ? Number(range[2]) - Number(range[1]) + 1 : size;
      res.writeHead(range ? 206 : 200, { 'content-length': String(length) });
      try {
        await body.writeTo(res);
        return 'sent';
      } catch (err) {
        res.destroy();
        return `failed: ${(err as Error).message}`;
      }
    })();
    served.results.push(result);
  });
}

/** Starts `server` on a free loopback port; its origin. */
async function listening(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function stopAll(server: Server, store: FilesystemBlobStoreDriver, dir: string): Promise<void> {
  server.closeAllConnections();
  server.close();
  store.onApplicationShutdown();
  await rm(dir, { recursive: true, force: true });
}

const openDescriptors = () => readdirSync('/proc/self/fd').length;

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('the native addon (native/sendfile)', () => {
  it('rejects calls with bad arguments instead of crashing', () => {
    const require = createRequire(import.meta.url);
    const addon = require('../../native/sendfile/build/Release/sendfile.node') as { sendFile: (...args: unknown[]) => unknown; cancel: (t: unknown) => void };
    expect(() => addon.sendFile(-1, 0, 0, 1, () => undefined)).toThrow(/sendFile\(socketFd|cancel\(transfer\)/);
    expect(() => addon.sendFile(1, 0, 0, 1)).toThrow(/sendFile\(socketFd|cancel\(transfer\)/);
    expect(() => addon.sendFile(1, 0, 0, 1, () => undefined, 'yes')).toThrow(/sendFile\(socketFd|cancel\(transfer\)/);
    expect(() => addon.sendFile('1', 0, 0, 1, () => undefined)).toThrow(/sendFile\(socketFd|cancel\(transfer\)/);
    expect(() => addon.cancel({})).toThrow(/sendFile\(socketFd|cancel\(transfer\)/);
    expect(() => addon.sendFile(1_000_000, 0, 0, 1, () => undefined)).toThrow(/cannot duplicate the socket's descriptor \(Bad file descriptor\)/);
  });

  it('copies to clients on the loopback in auto mode only', () => {
    for (const address of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) {
      expect(loopbackCopies('auto', address)).toBe(true);
      expect(loopbackCopies('on', address)).toBe(false);
    }
    for (const address of ['10.0.0.7', '192.168.1.20', '::ffff:10.0.0.7', 'fe80::1', '2001:db8::127', undefined]) {
      expect(loopbackCopies('auto', address)).toBe(false);
    }
  });
});

// `auto` copies to these loopback clients (1 MiB reads and writes, in the addon); `on` uses sendfile(2).
describe.each(['auto', 'on'] as const)('the native addon sends stored blobs (BLOB_SENDFILE=%s)', (mode) => {
  let dir: string;
  let store: FilesystemBlobStoreDriver;
  let bytes: Buffer;
  let digest: string;
  let server: Server;
  let origin: string;
  const served: Served = { results: [] };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sendfile-'));
    store = new FilesystemBlobStoreDriver(dir, { sendfile: mode });
    bytes = randomBytes(BIG);
    digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const writer = await store.create();
    await writer.append(bytes);
    await writer.commit(digest, bytes.length);
    server = serve(store, digest, BIG, served);
    origin = await listening(server);
  });

  afterAll(() => stopAll(server, store, dir));

  it('is built by npm install on this platform', () => {
    expect(SENDFILE_AVAILABLE).toBe(true);
  });

  it('sends whole blobs and ranges, one after another on one keep-alive connection, byte for byte', async () => {
    const client = new Client(origin, { pipelining: 1 });
    const before = { ...sendfileStats };
    try {
      const get = async (range?: [number, number]) => {
        const res = await client.request({ method: 'GET', path: '/blob', headers: range ? { range: `bytes=${range[0]}-${range[1]}` } : {} });
        return Buffer.from(await res.body.arrayBuffer());
      };
      expect((await get()).equals(bytes)).toBe(true);
      expect((await get([7, 1_000_006])).equals(bytes.subarray(7, 1_000_007))).toBe(true);
      expect((await get([BIG - 1, BIG - 1])).equals(bytes.subarray(BIG - 1))).toBe(true);
      expect((await get()).equals(bytes)).toBe(true);
    } finally {
      await client.close();
    }
    await Promise.all(served.results); // the client may have every byte before the server's transfer has reported
    expect(sendfileStats.transfers - before.transfers).toBe(4);
    expect(sendfileStats.copiedTransfers - before.copiedTransfers).toBe(mode === 'auto' ? 4 : 0);
    expect(sendfileStats.bytes - before.bytes).toBe(2 * BIG + 1_000_000 + 1);
  });

  it('sends pages in the page cache from the event loop, and pages that are not from the thread pool', async () => {
    // A blob just stored is cached: the event loop sends all of it (as nginx does). Dropped from the page cache,
    // its pages must come from the disk: the thread pool sends them (the event loop never waits for a disk).
    const client = new Client(origin, { pipelining: 1 });
    const get = async () => {
      const before = { ...sendfileStats };
      const res = await client.request({ method: 'GET', path: '/blob' });
      expect(Buffer.from(await res.body.arrayBuffer()).equals(bytes)).toBe(true);
      await until(() => sendfileStats.bytes - before.bytes === BIG, 'the transfer to report');
      return sendfileStats.pooledBytes - before.pooledBytes;
    };
    // What the page cache holds, the event loop sends. The kernel may reclaim a page of it at any moment (other
    // suites fill memory: a CI run once saw 4.3 of 24 MiB sent from the pool right after a full read): a part
    // reclaimed goes from the pool, is cached again, and the next GET sends it from the loop. A few tries, then.
    const fromTheLoop = async () => {
      let pooled = await get();
      for (let tries = 1; pooled > 0 && tries < 4; tries++) pooled = await get();
      return pooled;
    };
    try {
      expect(await fromTheLoop()).toBe(0);
      // Clean pages (flushed first) of a file nobody maps are dropped by POSIX_FADV_DONTNEED: GNU dd's nocache.
      const file = join(dir, blobContentPath(digest));
      execFileSync('sync', [file]);
      execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
      expect(await get()).toBeGreaterThan(0);
      expect(await fromTheLoop()).toBe(0); // read once, cached again
    } finally {
      await client.close();
    }
  });

  it('uncorks the connection when a transfer ends: a short body and the next answer arrive at once', async () => {
    // The socket is corked while sendfile runs (nginx's tcp_nopush). Left corked, the kernel would hold a
    // body's last partial segment, and every later answer on the connection, for 200 ms each.
    const client = new Client(origin, { pipelining: 1 });
    const times: number[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const res = await client.request({ method: 'GET', path: '/blob', headers: { range: `bytes=${i}-${i + 9}` } });
        expect(Buffer.from(await res.body.arrayBuffer()).equals(bytes.subarray(i, i + 10))).toBe(true);
        times.push(performance.now() - started);
      }
    } finally {
      await client.close();
    }
    times.sort((a, b) => a - b);
    expect(times[2]).toBeLessThan(150);
  });

  it('keeps sending to a client that stops reading for a while (a full socket), then catches up', async () => {
    const before = { ...sendfileStats };
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /blob HTTP/1.1\r\nhost: test\r\n\r\n');
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 300)); // the socket buffers fill up; the transfer waits
    const received = await readResponse(socket, BIG);
    socket.destroy();
    expect(received.equals(bytes)).toBe(true);
    await until(() => sendfileStats.bytes - before.bytes === BIG, 'the transfer to report');
  });

  it('stops when the client goes away mid-body, and lets go of the connection and the file', async () => {
    const results = served.results.length;
    const descriptors = openDescriptors();
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /blob HTTP/1.1\r\nhost: test\r\n\r\n');
    socket.pause(); // never reads: the transfer fills the socket and waits
    await until(() => served.results.length > results, 'the request');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    await expect(served.results[results]).resolves.toMatch(/^failed: /);
    // Our duplicate of the connection is closed (no descriptor left behind) and the object is no longer held.
    await until(() => openDescriptors() <= descriptors + 1, 'descriptors to close'); // + the cached object (OpenBlobFiles)
    await store.delete(digest);
    await until(() => openDescriptors() <= descriptors, 'the deleted object to close');
  });

  it('never puts a body on the wire for a HEAD request', async () => {
    // Recreated: the previous test deleted it.
    const writer = await store.create();
    await writer.append(bytes);
    await writer.commit(digest, bytes.length);
    const client = new Client(origin, { pipelining: 1 });
    const before = { ...sendfileStats };
    try {
      const head = await client.request({ method: 'HEAD', path: '/blob' });
      await head.body.dump();
      expect(head.statusCode).toBe(200);
      const res = await client.request({ method: 'GET', path: '/blob', headers: { range: 'bytes=0-9' } });
      expect(res.statusCode).toBe(206);
      expect(Buffer.from(await res.body.arrayBuffer()).equals(bytes.subarray(0, 10))).toBe(true);
    } finally {
      await client.close();
    }
    await Promise.all(served.results);
    expect(sendfileStats.transfers - before.transfers).toBe(1);
  });

  it('fails only the transfer when the stored file is cut short under it, and serves it again once restored', async () => {
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    const results = served.results.length;
    socket.write('GET /blob HTTP/1.1\r\nhost: test\r\n\r\n');
    socket.pause(); // the transfer fills the socket and waits for it
    await until(() => served.results.length > results, 'the request');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await truncate(join(dir, blobContentPath(digest)), 1024 * 1024);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.resume();
    await once(socket, 'close');
    await expect(served.results[results]).resolves.toMatch(/^failed: sendfile failed after \d+ of 25165824 bytes: ENODATA/);
    expect(Buffer.concat(received).length).toBeLessThan(BIG);
    // Restored, it is served whole again (the process and the addon are fine).
    await store.delete(digest);
    const writer = await store.create();
    await writer.append(bytes);
    await writer.commit(digest, bytes.length);
    const client = new Client(origin);
    try {
      const res = await client.request({ method: 'GET', path: '/blob' });
      expect(Buffer.from(await res.body.arrayBuffer()).equals(bytes)).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('serves with reads and writes when sendfile is turned off (BLOB_SENDFILE=off)', async () => {
    const plain = new FilesystemBlobStoreDriver(dir, { sendfile: 'off' });
    const results: Served = { results: [] };
    const other = serve(plain, digest, BIG, results);
    const client = new Client(await listening(other));
    const before = { ...sendfileStats };
    try {
      const res = await client.request({ method: 'GET', path: '/blob' });
      expect(Buffer.from(await res.body.arrayBuffer()).equals(bytes)).toBe(true);
      await expect(results.results[0]).resolves.toBe('sent');
    } finally {
      await client.close();
      other.close();
      plain.onApplicationShutdown();
    }
    expect(sendfileStats.transfers).toBe(before.transfers);
  });
});

describe("sendfile for a running fill's clients (spool tail readers)", () => {
  let dir: string;
  let store: FilesystemBlobStoreDriver;
  let server: Server;
  let origin: string;
  /** The body the next request is answered with. */
  let next: { body: SelfWritingBody; size: number; result?: Promise<string> } | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sendfile-fill-'));
    store = new FilesystemBlobStoreDriver(dir);
    server = createServer((_req, res) => {
      const answer = next!;
      res.writeHead(200, { 'content-length': String(answer.size) });
      answer.result = answer.body.writeTo(res).then(
        () => 'sent',
        (err: Error) => {
          res.destroy();
          return `failed: ${err.message}`;
        },
      );
    });
    origin = await listening(server);
  });

  afterAll(() => stopAll(server, store, dir));

  /** 16 MiB in 64 KiB chunks handed to the writer's sink, as an upstream body arrives; 3-4 MiB are stored before the client comes. */
  async function follow(digestOf: (bytes: Buffer) => string) {
    const bytes = randomBytes(16 * 1024 * 1024);
    const writer = await store.create();
    const chunks = Array.from({ length: 256 }, (_, i) => bytes.subarray(i * 65536, (i + 1) * 65536));
    for (const chunk of chunks.slice(0, 64)) await writer.sink.write(Buffer.from(chunk));
    await until(() => writer.bytesWritten >= 3 * 1024 * 1024, 'the first batches to be stored');
    const storedFirst = writer.bytesWritten;
    next = { body: writer.openTailReader(0, { end: bytes.length - 1 }) as unknown as SelfWritingBody, size: bytes.length };
    const client = new Client(origin);
    const response = client.request({ method: 'GET', path: '/fill' }).then(async (res) => {
      const received: Buffer[] = [];
      try {
        for await (const chunk of res.body) received.push(chunk as Buffer);
        return { body: Buffer.concat(received), error: undefined };
      } catch (err) {
        return { body: Buffer.concat(received), error: err as Error };
      }
    });
    for (const [i, chunk] of chunks.slice(64).entries()) {
      await writer.sink.write(Buffer.from(chunk));
      if (i % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 2)); // the client catches up now and then
    }
    await writer.sink.end();
    const committed = writer.commit(digestOf(bytes), bytes.length).then(
      () => 'committed',
      (err: Error) => `rejected: ${err.message}`,
    );
    const result = await response;
    await client.close().catch(() => undefined);
    return { bytes, result, committed: await committed, served: await next.result!, storedFirst };
  }

  it('sends what is stored with sendfile and the batch just stored from memory, byte for byte', async () => {
    const before = { ...sendfileStats };
    const { bytes, result, committed, served, storedFirst } = await follow((b) => `sha256:${createHash('sha256').update(b).digest('hex')}`);
    expect(committed).toBe('committed');
    expect(served).toBe('sent');
    expect(result.error).toBeUndefined();
    expect(result.body.equals(bytes)).toBe(true);
    // At least what was stored before the client came went with sendfile.
    expect(sendfileStats.transfers).toBeGreaterThan(before.transfers);
    expect(sendfileStats.bytes - before.bytes).toBeGreaterThanOrEqual(storedFirst);
  });

  it('holds back the last bytes when the digest does not match: the client never gets a complete body', async () => {
    const { bytes, result, committed, served } = await follow(() => `sha256:${'0'.repeat(64)}`);
    expect(committed).toMatch(/^rejected: /);
    expect(served).toMatch(/^failed: /);
    expect(result.error).toBeDefined();
    expect(result.body.length).toBeLessThan(bytes.length);
    expect(result.body.equals(bytes.subarray(0, result.body.length))).toBe(true);
  });
});

/** Reads one HTTP/1.1 response with a Content-Length body of `length` bytes from `socket`; returns the body. */
async function readResponse(socket: Socket, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let headerEnd = -1;
  socket.resume();
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    if (headerEnd < 0) headerEnd = Buffer.concat(chunks).indexOf('\r\n\r\n');
    if (headerEnd >= 0 && total - headerEnd - 4 >= length) break;
  }
  const all = Buffer.concat(chunks);
  expect(all.subarray(0, 12).toString()).toBe('HTTP/1.1 200');
  return all.subarray(headerEnd + 4, headerEnd + 4 + length);
}
