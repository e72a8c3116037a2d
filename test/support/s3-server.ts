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
  stop(): Promise<void>;
}

const SERVER_SCRIPT = `
const S3rver = require(process.argv[1]);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: process.argv[2] });
server.run().then(({ port }) => process.stdout.write(JSON.stringify({ port }) + '\\n'), (err) => {
  process.stderr.write(String(err && err.stack || err));
  process.exit(1);
});
// Never die of a closed stdout/stderr pipe (the parent stops reading once it has the port).
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
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

export async function startS3Server(directory: string): Promise<S3TestServer> {
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const child = spawn(process.execPath, ['-e', SERVER_SCRIPT, s3rverPath, directory], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await readPort(child, () => stderr);
  // Keep draining what the server prints, so it never blocks on (or dies of) a full or closed pipe.
  child.stdout!.on('data', () => undefined).resume();
  // A suite that forgets stop() must not keep the test runner alive; the server exits when we do.
  child.unref();
  for (const pipe of [child.stdout, child.stderr]) (pipe as unknown as { unref(): void }).unref();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
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
