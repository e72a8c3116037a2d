import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { QUEUE_DRIVER, type QueueDriver } from '../jobs/queue-driver.js';
import { BLOB_STORE, type BlobStore } from '../storage/blob-store.js';

export interface ReadinessResult {
  status: 'ok' | 'unavailable';
  checks: Record<string, string>;
}

const TIMEOUT_MS = 3000;

async function probe(fn: () => Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      }),
    ]);
    return 'ok';
  } catch (err) {
    return `error: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}

@Injectable()
export class ReadinessService {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  async check(): Promise<ReadinessResult> {
    const [database, queue, storage] = await Promise.all([
      probe(() => this.dataSource.query('SELECT 1')),
      probe(() => this.queue.check()),
      probe(() => this.blobs.check()),
    ]);
    const checks = { database, queue, storage };
    return { status: Object.values(checks).every((c) => c === 'ok') ? 'ok' : 'unavailable', checks };
  }
}
