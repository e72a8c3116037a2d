import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { S3TestServer, startS3Server } from '../../test/support/s3-server.js';
import { DigestMismatchError } from './blob-store.js';
import { runBlobStoreContract } from './blob-store.contract.js';
import { S3BlobStoreDriver } from './s3-blob-store.driver.js';

/** A real S3-compatible server (s3rver, see STACK-NOTES.md), one fresh bucket per test. */
let server: S3TestServer;
let workDir: string;
let buckets = 0;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'blob-store-s3-'));
  server = await startS3Server(join(workDir, 's3rver'));
});

afterAll(async () => {
  await server?.stop();
  await rm(workDir, { recursive: true, force: true });
});

async function newStore(spoolDirectory = join(workDir, 'spool'), publicEndpoint?: string): Promise<S3BlobStoreDriver> {
  buckets += 1;
  const store = new S3BlobStoreDriver({
    endpoint: server.endpoint,
    bucket: `blobs-${buckets}`,
    region: 'us-east-1',
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    forcePathStyle: true,
    spoolDirectory,
    publicEndpoint,
  });
  await store.createBucketIfMissing();
  return store;
}

runBlobStoreContract('s3 (s3rver)', async () => {
  const store = await newStore();
  return {
    store,
    async plantOrphanTemporary() {
      const id = randomUUID();
      await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: `_uploads/${id}`, Body: 'the upload of a process that crashed' }));
      return id;
    },
    async readOffloaded(target) {
      if (target.kind !== 'url') throw new Error(`the S3 driver offloads to URLs, not ${target.kind}`);
      const res = await fetch(target.url); // no credentials: only what the URL carries
      if (res.status !== 200) throw new Error(`GET of the presigned URL -> ${res.status}: ${await res.text()}`);
      return Buffer.from(await res.arrayBuffer());
    },
    async dispose() {
      store.onApplicationShutdown();
    },
  };
});

describe('S3BlobStoreDriver layout', () => {
  it('commits to blobs/sha256/ab/<hex>, leaves no _uploads/ object, and spools with no file left', async () => {
    const spoolDirectory = join(workDir, `spool-${randomUUID()}`);
    const store = await newStore(spoolDirectory);
    try {
      const bytes = randomBytes(12 * 1024 ** 2 + 3); // more than one 8 MiB part: a multipart upload
      const hex = createHash('sha256').update(bytes).digest('hex');
      const writer = await store.create();
      await writer.append(bytes);
      expect(await readdir(spoolDirectory)).toEqual([]);
      await writer.commit(`sha256:${hex}`, bytes.length);

      const listing = await store.client.send(new ListObjectsV2Command({ Bucket: store.bucket }));
      expect((listing.Contents ?? []).map((object) => object.Key)).toEqual([`blobs/sha256/${hex.slice(0, 2)}/${hex}`]);
      const object = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: `blobs/sha256/${hex.slice(0, 2)}/${hex}` }));
      const stored = createHash('sha256');
      for await (const chunk of object.Body as Readable) stored.update(chunk as Buffer);
      expect(stored.digest('hex')).toBe(hex);
    } finally {
      store.onApplicationShutdown();
    }
  });

  it('presigns offload URLs for the public endpoint (S3_PUBLIC_ENDPOINT), with the store serving Range, and only signature parameters in them', async () => {
    // Clients reach the store as `localhost`, the app as 127.0.0.1: the signature is for the public host.
    const publicEndpoint = server.endpoint.replace('127.0.0.1', 'localhost');
    const store = await newStore(join(workDir, 'spool'), publicEndpoint);
    try {
      const bytes = randomBytes(64 * 1024);
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      const writer = await store.create();
      await writer.append(bytes);
      await writer.commit(digest, bytes.length);

      const target = await store.offloadTarget(digest, { expiresInSeconds: 30 });
      if (target.kind !== 'url') throw new Error('expected a URL');
      const url = new URL(target.url);
      expect(url.origin).toBe(new URL(publicEndpoint).origin);
      expect([...url.searchParams.keys()].filter((k) => !k.startsWith('X-Amz-') && k !== 'x-id')).toEqual([]);
      const ranged = await fetch(target.url, { headers: { range: 'bytes=100-199' } });
      expect(ranged.status).toBe(206);
      expect(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(100, 200))).toBe(true);
      // Signed for the public host (s3rver does not check the host; S3 and MinIO do).
      expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    } finally {
      store.onApplicationShutdown();
    }
  });

  it('aborts a multipart upload on a digest mismatch or a cancel: the bucket stays empty', async () => {
    const store = await newStore();
    try {
      const bytes = randomBytes(20 * 1024 ** 2); // three parts of 8 MiB
      const mismatched = await store.create();
      await mismatched.append(bytes);
      await expect(mismatched.commit(`sha256:${'0'.repeat(64)}`)).rejects.toBeInstanceOf(DigestMismatchError);

      const cancelled = await store.create();
      await cancelled.append(bytes);
      await cancelled.cancel();

      const listing = await store.client.send(new ListObjectsV2Command({ Bucket: store.bucket }));
      expect(listing.Contents ?? []).toEqual([]);
    } finally {
      store.onApplicationShutdown();
    }
  });

  it('still lets followers finish with verified bytes when the object store refuses the write', async () => {
    const store = new S3BlobStoreDriver({
      endpoint: server.endpoint,
      bucket: 'bucket-that-does-not-exist',
      region: 'us-east-1',
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      forcePathStyle: true,
      spoolDirectory: join(workDir, 'spool'),
    });
    try {
      const bytes = randomBytes(10 * 1024 ** 2);
      const hex = createHash('sha256').update(bytes).digest('hex');
      const writer = await store.create();
      const follower = writer.openTailReader();
      const followed = createHash('sha256');
      follower.on('data', (chunk: Buffer) => followed.update(chunk));
      const followerEnded = new Promise((resolve, reject) => follower.on('end', resolve).on('error', reject));
      await writer.append(bytes);

      await expect(writer.commit(`sha256:${hex}`)).rejects.toMatchObject({ name: 'NoSuchBucket' });
      await followerEnded;
      expect(followed.digest('hex')).toBe(hex);
    } finally {
      store.onApplicationShutdown();
    }
  });

  it('fails the readiness check when the bucket does not exist', async () => {
    const store = new S3BlobStoreDriver({
      endpoint: server.endpoint,
      bucket: 'no-such-bucket',
      region: 'us-east-1',
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      forcePathStyle: true,
      spoolDirectory: join(workDir, 'spool'),
    });
    try {
      await expect(store.check()).rejects.toThrow();
    } finally {
      store.onApplicationShutdown();
    }
  });
});
