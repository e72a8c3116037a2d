import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobSpool } from './blob-spool.js';
import { requestTimeoutMs, S3SpoolUpload } from './s3-spool-upload.js';

describe('S3SpoolUpload', () => {
  let dir: string;
  let server: Server;
  const sockets = new Set<Socket>();
  let client: S3Client;
  let closing = false;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3-spool-upload-'));
    // An object store that accepts the connection, then neither reads the request nor answers.
    closing = false;
    server = createServer((socket) => {
      if (closing) return void socket.destroy();
      sockets.add(socket);
      socket.pause();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    client = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
  });

  afterEach(async () => {
    // The server's close waits for every connection: the ones it has are destroyed, a late one on arrival.
    closing = true;
    client.destroy();
    const closed = new Promise((resolve) => server.close(resolve));
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await closed;
    await rm(dir, { recursive: true, force: true });
  });

  it('gives up on a request the store never answers (the fill fails and is retried) instead of waiting forever', async () => {
    const spool = await BlobSpool.create(join(dir, 'spool'));
    await spool.appendAll([randomBytes(100_000)]);
    spool.seal();
    const upload = new S3SpoolUpload(spool, { client, bucket: 'b', key: '_uploads/x', partSize: 5 * 1024 ** 2, queueSize: 1, requestTimeoutMs: () => 300 });
    const started = Date.now();
    await expect(upload.done).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5000);
    await spool.release();
  });

  it('allows 10 s plus 1 s per MiB of body by default', () => {
    expect([requestTimeoutMs(0), requestTimeoutMs(100_000), requestTimeoutMs(8 * 1024 ** 2)]).toEqual([10_000, 11_000, 18_000]);
  });
});
