import { Module } from '@nestjs/common';
import { join } from 'node:path';
import { AppConfig, appConfig, StorageConfig, storageConfig } from '../config/config.js';
import { BLOB_STORE, BlobStore } from './blob-store.js';
import { FilesystemBlobStoreDriver } from './filesystem-blob-store.driver.js';
import { S3BlobStoreDriver } from './s3-blob-store.driver.js';

/** Provides BLOB_STORE to the modules that import it: the driver named by STORAGE_DRIVER (filesystem | s3). */
@Module({
  providers: [
    {
      provide: BLOB_STORE,
      inject: [storageConfig.KEY, appConfig.KEY],
      useFactory: (storage: StorageConfig, app: AppConfig): BlobStore => {
        if (storage.driver === 'filesystem') return new FilesystemBlobStoreDriver(join(app.dataDir, 'blobs'), { sendfile: storage.blobSendfile });
        const { bucket, publicEndpoint, ...s3 } = storage.s3;
        if (!bucket) throw new Error('STORAGE_DRIVER=s3 needs S3_BUCKET');
        return new S3BlobStoreDriver({ ...s3, bucket, publicEndpoint, spoolDirectory: join(app.dataDir, 's3-spool') });
      },
    },
  ],
  exports: [BLOB_STORE],
})
export class StorageModule {}
