import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** A private containerd daemon (Debian's `containerd`): its own root, state, sockets and config under a temp dir. */
export interface Containerd {
  readonly dir: string;
  readonly socket: string;
  /** Runs `ctr --address <socket> ...args`; rejects with stderr on a non-zero exit. */
  ctr(args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** Writes `<hostsDir>/<host>/hosts.toml` and returns hostsDir (for `--hosts-dir`). */
  hostsDir(name: string, host: string, toml: string): string;
  /** Stops the daemon (SIGTERM, then SIGKILL) and deletes its directory. */
  close(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  const dir = mkdtempSync(join(tmpdir(), 'cvr-ctrd-'));
  const socket = join(dir, 'c.sock');
  writeFileSync(
    join(dir, 'config.toml'),
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${join(dir, 't.sock')}"`,
      '',
    ].join('\n'),
  );
  const log = join(dir, 'containerd.log');
  const child: ChildProcess = spawn('sh', ['-c', `exec containerd --config "${join(dir, 'config.toml')}" >"${log}" 2>&1`], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ctr = (args: string[], timeoutMs = 120_000) => exec('ctr', ['--address', socket, ...args], { timeout: timeoutMs });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await ctr(['version'], 5_000);
      break;
    } catch (err) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`containerd did not start: ${(err as Error).message}\n${readFileSync(log, 'utf8').slice(-2000)}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    dir,
    socket,
    ctr,
    hostsDir(name, host, toml) {
      const hostsDir = join(dir, 'hosts', name);
      mkdirSync(join(hostsDir, host), { recursive: true });
      writeFileSync(join(hostsDir, host, 'hosts.toml'), toml);
      return hostsDir;
    },
    async close() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
