import { join } from 'node:path';
import type { StorageConfig } from '../config/config.js';
import type { BlobStore } from './blob-store.js';
import { FilesystemBlobStoreDriver } from './filesystem-blob-store.driver.js';
import { S3BlobStoreDriver } from './s3-blob-store.driver.js';

/** A driver and how to let go of it outside Nest (its own shutdown hook). */
export interface OpenedBlobStore {
  store: BlobStore;
  close(): void;
}

/** The driver STORAGE_DRIVER names (filesystem | s3), from the validated configuration and DATA_DIR. */
export function openBlobStore(storage: StorageConfig, dataDir: string): OpenedBlobStore {
  if (storage.driver === 'filesystem') {
    const driver = new FilesystemBlobStoreDriver(join(dataDir, 'blobs'), { sendfile: storage.blobSendfile });
    return { store: driver, close: () => driver.onApplicationShutdown() };
  }
  const { bucket, publicEndpoint, ...s3 } = storage.s3;
  if (!bucket) throw new Error('STORAGE_DRIVER=s3 needs S3_BUCKET');
  const driver = new S3BlobStoreDriver({ ...s3, bucket, publicEndpoint, spoolDirectory: join(dataDir, 's3-spool') });
  return { store: driver, close: () => driver.onApplicationShutdown() };
}
