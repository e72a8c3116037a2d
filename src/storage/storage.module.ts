import { Module } from '@nestjs/common';
import { AppConfig, appConfig, StorageConfig, storageConfig } from '../config/config.js';
import { BLOB_STORE, BlobStore } from './blob-store.js';
import { openBlobStore } from './blob-store.factory.js';

/** Provides BLOB_STORE to the modules that import it: the driver named by STORAGE_DRIVER (filesystem | s3). */
@Module({
  providers: [
    {
      provide: BLOB_STORE,
      inject: [storageConfig.KEY, appConfig.KEY],
      // Nest calls the driver's own shutdown hook: only the driver is provided.
      useFactory: (storage: StorageConfig, app: AppConfig): BlobStore => openBlobStore(storage, app.dataDir).store,
    },
  ],
  exports: [BLOB_STORE],
})
export class StorageModule {}
