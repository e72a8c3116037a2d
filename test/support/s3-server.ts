import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

/**
 * A real S3-compatible server for tests: s3rver 3 in a child process (so its memory and CPU are not
 * counted against the process under test), on 127.0.0.1 and a random port, storing under `directory`.
 * Clients need forcePathStyle and the credentials S3RVER / S3RVER (see STACK-NOTES.md).
 */
export interface S3TestServer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The server process (a new one if it had to be started again), for CPU accounting. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

const SERVER_SCRIPT = `
const S3rver = require(process.argv[1]);
const server = new S3rver({ address: '127.0.0.1', port: Number(process.argv[3]), silent: true, directory: process.argv[2] });
server.run().then(({ port }) => process.stdout.write(JSON.stringify({ port }) + '\\n'), (err) => {
  process.stderr.write(String(err && err.stack || err));
  process.exit(1);
});
// Never die of a closed stdout/stderr pipe (the parent stops reading once it has the port).
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
// A request s3rver trips over must not take the whole test server down: say so and go on.
process.on('uncaughtException', (err) => process.stderr.write('uncaught: ' + String(err && err.stack || err) + '\\n'));
process.on('unhandledRejection', (err) => process.stderr.write('unhandled: ' + String(err && err.stack || err) + '\\n'));
// Stopped by a signal from the parent; and never outlives it (checked every second).
const parent = process.ppid;
setInterval(() => {
  try {
    process.kill(parent, 0);
  } catch {
    process.exit(0);
  }
}, 1000);
`;

/**
 * Starts the server; should it exit on its own (it stores on disk, so nothing is lost), it is started again
 * on the same port, and why it exited is written to stderr where the test output shows it.
 */
export async function startS3Server(directory: string): Promise<S3TestServer> {
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  let stopping = false;
  let child: ChildProcess;
  const spawnServer = async (wantedPort: number): Promise<number> => {
    child = spawn(process.execPath, ['-e', SERVER_SCRIPT, s3rverPath, directory, String(wantedPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.length > 64 * 1024) stderr = stderr.slice(-16 * 1024);
    });
    const port = await readPort(child, () => stderr);
    child.once('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(
        `s3rver test server on port ${port} exited on its own (code ${code}, signal ${signal}), starting it again: ${stderr.slice(-4000)}\n`,
      );
      spawnServer(port).catch((err: Error) => process.stderr.write(`s3rver test server could not start again: ${err.message}\n`));
    });
    // Keep draining what the server prints, so it never blocks on (or dies of) a full or closed pipe.
    child.stdout!.on('data', () => undefined).resume();
    // A suite that forgets stop() must not keep the test runner alive; the server exits when we do.
    child.unref();
    for (const pipe of [child.stdout, child.stderr]) (pipe as unknown as { unref(): void }).unref();
    return port;
  };
  const port = await spawnServer(0);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    get pid() {
      return child.pid;
    },
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      // Unref'd, the child would not keep this process's event loop alive until its exit is seen: a caller
      // with nothing else left to do (a probe's last step) would end with stop() never settled.
      child.ref();
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      try {
        await exited;
      } finally {
        clearTimeout(killer);
      }
    },
  };
}

async function readPort(child: ChildProcess, stderr: () => string): Promise<number> {
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`s3rver exited with code ${code}: ${stderr()}`);
  });
  try {
    const first = new Promise<number>((resolve, reject) => {
      lines.once('line', (line) => {
        lines.removeAllListeners('close');
        resolve((JSON.parse(line) as { port: number }).port);
      });
      lines.once('close', () => reject(new Error(`s3rver printed no port: ${stderr()}`)));
    });
    return await Promise.race([first, exited]);
  } finally {
    exited.catch(() => undefined);
  }
}

/**
 * A fresh bucket on `server` and the app's environment for it (STORAGE_DRIVER=s3 and the S3_* settings),
 * as an operator would set them for an S3-compatible store.
 */
export async function s3StorageEnv(server: S3TestServer, bucket = 'registry-cache'): Promise<Record<string, string>> {
  const { CreateBucketCommand, S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return {
    STORAGE_DRIVER: 's3',
    S3_ENDPOINT: server.endpoint,
    S3_BUCKET: bucket,
    S3_REGION: 'us-east-1',
    S3_ACCESS_KEY_ID: server.accessKeyId,
    S3_SECRET_ACCESS_KEY: server.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
  };
}
