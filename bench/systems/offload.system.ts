/**
 * The app with its data-plane offload (issue 13) as two more pull systems, each a deployment of its own
 * beside the plain app:
 *
 * - `app-x-accel`: the app on filesystem storage with BLOB_OFFLOAD=x-accel behind nginx with the shipped
 *   front configuration (deploy/nginx/registry.conf.template); clients talk to nginx, which sends the
 *   files of blob hits. CPU = the app + that nginx (master and workers).
 * - `app-presigned`: the app on S3 storage (an s3rver of its own) with BLOB_REDIRECT=presigned; a blob
 *   hit is a 307 to the store. CPU = the app + s3rver (which moves the bytes here).
 *
 * Registries, tokens, fresh caches and settling are the plain app system's (AppSystem) on that process.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { writeFrontPrefix } from '../../test/support/nginx-front.js';
import { startS3Server, type S3TestServer } from '../../test/support/s3-server.js';
import { findFreePort } from '../../test/support/upstream-registry.js';
import { cpuSecondsOf } from '../process-cpu.js';
import type { StartedProcess, StartedProcesses } from '../started-processes.js';
import { AppProcess } from './app-process.js';
import { AppSystem } from './app.system.js';
import type { PullSystem } from './pull-system.js';
import { waitForHttp } from './wait-for-http.js';

/** Two more deployments boot after the others: on a busy machine that takes longer than the first. */
const READY_TIMEOUT_MS = 180_000;

export interface OffloadSystemOptions {
  upstreamUrl: string;
  workDir: string;
  processes: StartedProcesses;
}

export class OffloadAppSystem implements PullSystem {
  private constructor(
    readonly id: 'app-x-accel' | 'app-presigned',
    /** What clients talk to: nginx, or the app itself. */
    readonly baseUrl: string,
    private readonly app: AppSystem,
    /** What the CPU row counts, in words. */
    readonly cpuCounted: string,
    private readonly cpuGroups: () => number[],
    private readonly cpuPids: () => number[],
    private readonly stopAll: () => Promise<void>,
  ) {}

  /** The app behind nginx (the shipped configuration) with BLOB_OFFLOAD=x-accel. */
  static async startXAccel(options: OffloadSystemOptions, nginxBinary = 'nginx'): Promise<OffloadAppSystem> {
    const app = await AppProcess.start({
      storage: 'filesystem',
      workDir: options.workDir,
      processes: options.processes,
      name: 'app-x-accel',
      extraEnv: { BLOB_OFFLOAD: 'x-accel' },
      readyTimeoutMs: READY_TIMEOUT_MS,
    });
    let nginx: StartedProcess | undefined;
    try {
      const prefix = join(options.workDir, 'app-x-accel', 'nginx');
      await mkdir(prefix, { recursive: true });
      const port = await findFreePort();
      const blobRoot = join(options.workDir, 'app-x-accel', 'data', 'blobs');
      await mkdir(blobRoot, { recursive: true });
      const front = writeFrontPrefix(prefix, { port, apiUrl: app.url, blobRoot, workers: 'auto', accessLog: false });
      nginx = options.processes.spawn('nginx (x-accel front)', nginxBinary, front.args, { stdio: ['ignore', 'ignore', 'ignore'] });
      const url = `http://127.0.0.1:${port}`;
      await waitForHttp(`${url}/-/health`, [200], nginx, () => readTail(front.errorLog));
      const started = nginx;
      return new OffloadAppSystem(
        'app-x-accel',
        url,
        new AppSystem(app, options.upstreamUrl),
        'app + its nginx front',
        () => [app.pid, started.pid],
        () => [],
        async () => {
          await options.processes.stop(started, 'SIGTERM');
          await app.stop();
        },
      );
    } catch (err) {
      if (nginx) await options.processes.stop(nginx, 'SIGTERM');
      await app.stop();
      throw err;
    }
  }

  /** The app on S3 storage (its own s3rver) with BLOB_REDIRECT=presigned. */
  static async startPresigned(options: OffloadSystemOptions): Promise<OffloadAppSystem> {
    const s3Dir = join(options.workDir, 'app-presigned-s3');
    await mkdir(s3Dir, { recursive: true });
    const server: S3TestServer = await startS3Server(s3Dir);
    try {
      const client = new S3Client({
        endpoint: server.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      });
      await client.send(new CreateBucketCommand({ Bucket: 'bench-presigned' }));
      client.destroy();
      const app = await AppProcess.start({
        storage: 'filesystem',
        workDir: options.workDir,
        processes: options.processes,
        name: 'app-presigned',
        readyTimeoutMs: READY_TIMEOUT_MS,
        extraEnv: {
          STORAGE_DRIVER: 's3',
          S3_ENDPOINT: server.endpoint,
          S3_BUCKET: 'bench-presigned',
          S3_REGION: 'us-east-1',
          S3_ACCESS_KEY_ID: server.accessKeyId,
          S3_SECRET_ACCESS_KEY: server.secretAccessKey,
          S3_FORCE_PATH_STYLE: 'true',
          BLOB_REDIRECT: 'presigned',
        },
      });
      return new OffloadAppSystem(
        'app-presigned',
        app.url,
        new AppSystem(app, options.upstreamUrl),
        'app + s3rver',
        () => [app.pid],
        () => (server.pid ? [server.pid] : []),
        async () => {
          await app.stop();
          await server.stop();
        },
      );
    } catch (err) {
      await server.stop();
      throw err;
    }
  }

  processGroups(): number[] {
    return [...this.cpuGroups(), ...this.cpuPids()];
  }

  /** CPU seconds used so far by the processes this system's CPU row counts (`cpuCounted`). */
  cpuSeconds(): number {
    return cpuSecondsOf(this.cpuGroups(), this.cpuPids());
  }

  repositoryPath(name: string): string {
    return this.app.repositoryPath(name);
  }

  skopeoCredentials(): string[] {
    return this.app.skopeoCredentials();
  }

  authorization(name: string): Promise<string> {
    return this.app.authorization(name);
  }

  freshCache(): Promise<void> {
    return this.app.freshCache();
  }

  settle(digests: readonly string[], timeoutMs: number): Promise<void> {
    return this.app.settle(digests, timeoutMs);
  }

  async close(): Promise<void> {
    await this.stopAll();
  }
}

function readTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}
