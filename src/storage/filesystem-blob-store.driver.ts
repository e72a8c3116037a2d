import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, opendir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import {
  assertTemporaryId,
  BlobNotFoundError,
  BlobStat,
  BlobStore,
  BlobWriter,
  blobContentPath,
  ByteRange,
  digestOfContentPath,
  isTemporaryId,
  OffloadTarget,
  resolveByteRange,
  StoredBlob,
  TemporaryBlob,
} from './blob-store.js';
import { BlobSpool } from './blob-spool.js';
import { FileBody } from './file-body.js';
import { OpenBlobFiles } from './open-blob-files.js';
import type { SendfileMode } from './socket-sendfile.js';
import { BlobCommitTarget, SpooledBlobWriter } from './spooled-blob-writer.js';

const UPLOADS = '_uploads';
/** Stored objects kept open while nobody reads them, and for how long (see OpenBlobFiles). */
const OPEN_FILES = { maxIdle: 256, idleMs: 30_000 };

/**
 * Blobs as files under one root directory (the default driver; root = `<DATA_DIR>/blobs`):
 *
 *     <root>/sha256/ab/<hex>      committed objects
 *     <root>/_uploads/<uuid>      writes in progress (same filesystem, so commit is a rename)
 *
 * Commit = verify the digest hashed while writing, fsync, rename into place, fsync the directory.
 * Objects being served stay open between reads (OpenBlobFiles), and go to an HTTP client's socket with
 * sendfile(2), or copied by the native addon to a loopback client, unless `sendfile` is `off` (BLOB_SENDFILE).
 */
export class FilesystemBlobStoreDriver implements BlobStore, OnApplicationShutdown {
  private readonly logger = new Logger(FilesystemBlobStoreDriver.name);
  private readonly openFiles = new OpenBlobFiles(OPEN_FILES);

  /** How stored blobs and fill spools go to HTTP clients (BLOB_SENDFILE). */
  private readonly sendfile: SendfileMode;

  constructor(
    readonly root: string,
    options: { sendfile?: SendfileMode } = {},
  ) {
    this.sendfile = options.sendfile ?? 'auto';
  }

  onApplicationShutdown(): void {
    this.openFiles.close();
  }

  async stat(digest: string): Promise<BlobStat | undefined> {
    const path = this.contentFile(digest);
    try {
      const info = await stat(path);
      return { size: info.size };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async createReadStream(digest: string, range?: ByteRange): Promise<Readable> {
    let file;
    try {
      file = await this.openFiles.acquire(this.contentFile(digest));
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(digest);
      throw err;
    }
    try {
      if (!range) return new FileBody(file, 0, file.size - 1, this.sendfile);
      const { start, end } = resolveByteRange(range, file.size);
      return new FileBody(file, start, end, this.sendfile);
    } catch (err) {
      file.release();
      throw err;
    }
  }

  async offloadTarget(digest: string): Promise<OffloadTarget> {
    const path = blobContentPath(digest);
    const info = await statIfPresent(join(this.root, path));
    if (!info?.isFile()) throw new BlobNotFoundError(digest);
    return { kind: 'file', path, size: info.size };
  }

  async create(): Promise<BlobWriter> {
    const uploads = join(this.root, UPLOADS);
    const tempPath = join(uploads, randomUUID());
    const spool = await BlobSpool.create(tempPath, { sendfile: this.sendfile }).catch(async (err: NodeJS.ErrnoException) => {
      // The uploads directory is made when a write first finds it missing, not checked before every write.
      if (err.code !== 'ENOENT') throw err;
      await mkdir(uploads, { recursive: true });
      return BlobSpool.create(tempPath, { sendfile: this.sendfile });
    });
    return new SpooledBlobWriter(spool, new FilesystemCommitTarget(this, spool, tempPath), this);
  }

  async delete(digest: string): Promise<void> {
    const path = this.contentFile(digest);
    this.openFiles.forget(path);
    await unlinkIfPresent(path);
  }

  async *list(): AsyncIterable<StoredBlob> {
    const algorithmDir = join(this.root, 'sha256');
    for await (const prefix of entriesOf(algorithmDir)) {
      if (!prefix.isDirectory()) continue;
      for await (const entry of entriesOf(join(algorithmDir, prefix.name))) {
        const digest = digestOfContentPath(`sha256/${prefix.name}/${entry.name}`);
        if (!digest || !entry.isFile()) continue;
        const info = await statIfPresent(join(algorithmDir, prefix.name, entry.name));
        if (info) yield { digest, size: info.size, modifiedAt: info.mtime };
      }
    }
  }

  async *listTemporary(): AsyncIterable<TemporaryBlob> {
    const uploads = join(this.root, UPLOADS);
    for await (const entry of entriesOf(uploads)) {
      if (!isTemporaryId(entry.name)) continue;
      const info = await statIfPresent(join(uploads, entry.name));
      if (info) yield { id: entry.name, modifiedAt: info.mtime };
    }
  }

  async deleteTemporary(id: string): Promise<void> {
    assertTemporaryId(id);
    await unlinkIfPresent(join(this.root, UPLOADS, id));
  }

  async check(): Promise<void> {
    const uploads = join(this.root, UPLOADS);
    await mkdir(uploads, { recursive: true });
    await access(this.root, constants.R_OK | constants.W_OK);
    await access(uploads, constants.R_OK | constants.W_OK);
  }

  /** @internal for FilesystemCommitTarget */
  contentFile(digest: string): string {
    return join(this.root, blobContentPath(digest));
  }

  /** @internal for FilesystemCommitTarget */
  warn(message: string): void {
    this.logger.warn(message);
  }
}

class FilesystemCommitTarget implements BlobCommitTarget {
  constructor(
    private readonly store: FilesystemBlobStoreDriver,
    private readonly spool: BlobSpool,
    private readonly tempPath: string,
  ) {}

  async persist(digest: string): Promise<void> {
    const target = this.store.contentFile(digest);
    if (await statIfPresent(target)) {
      // Another writer committed the same bytes first: keep theirs.
      await unlinkIfPresent(this.tempPath);
      return;
    }
    await this.spool.sync();
    await mkdir(dirname(target), { recursive: true });
    await rename(this.tempPath, target);
    await syncDirectory(dirname(target)).catch((err: Error) => this.store.warn(`could not fsync ${dirname(target)}: ${err.message}`));
  }

  async discard(): Promise<void> {
    await unlinkIfPresent(this.tempPath);
  }
}

async function* entriesOf(path: string) {
  let dir;
  try {
    dir = await opendir(path);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  yield* dir;
}

async function statIfPresent(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** Makes a rename into `path` durable. */
async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}
