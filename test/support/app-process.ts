/**
 * The built processes (`npm test`'s pretest runs tsc first), started the way an operator or compose
 * starts them: `node dist/src/main.js`, `node dist/src/worker.js`, the migration and consistency-check
 * commands. Output is kept in memory and, when asked, appended to a log file a failing test can print.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';

/** The files `npm run build` produces for each command (relative to the repository root, as in the image's WORKDIR). */
export const DIST = {
  api: 'dist/src/main.js',
  worker: 'dist/src/worker.js',
  migrate: 'dist/src/database/migrate.js',
  consistencyCheck: 'dist/src/lifecycle/consistency-check.js',
} as const;

export function distPath(file: string): string {
  return join(process.cwd(), file);
}

/** A child process's environment: only what is given, plus PATH and HOME, listening on loopback. */
export function processEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, HOST: '127.0.0.1', ...extra };
}

export interface AppProcess {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  /** True until the process has exited. */
  readonly running: boolean;
  stdout(): string;
  stderr(): string;
  /** The exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
}

/** Spawns `node <script> [...args]`; with `logFile`, stdout and stderr are also appended to it. */
export function spawnAppProcess(script: string, env: NodeJS.ProcessEnv, options: { args?: string[]; logFile?: string } = {}): AppProcess {
  const child = spawn(process.execPath, [distPath(script), ...(options.args ?? [])], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let file: WriteStream | undefined;
  if (options.logFile) {
    file = createWriteStream(options.logFile, { flags: 'a' });
    file.on('error', () => undefined);
  }
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    file?.write(d);
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    file?.write(d);
  });
  // 'close' (not 'exit'): every byte the process wrote has been read by then.
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      file?.end();
      resolve(code);
    }),
  );
  return {
    child,
    pid: child.pid,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    stdout: () => out,
    stderr: () => err,
    exited,
  };
}

/** The last lines of what a process wrote, for failure messages. */
export function outputTail(proc: AppProcess, lines = 30): string {
  return [...proc.stdout().trim().split('\n').slice(-lines), proc.stderr().trim()].filter(Boolean).join('\n');
}

/**
 * Polls `url + path` until it answers 2xx; throws (after killing the process) when the process exits
 * first or `timeoutMs` passes.
 */
export async function waitUntilServing(proc: AppProcess, url: string, options: { path?: string; timeoutMs?: number } = {}): Promise<void> {
  const path = options.path ?? '/-/ready';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!proc.running) {
      await proc.exited;
      throw new Error(`process exited with ${proc.child.exitCode ?? proc.child.signalCode} before ${path} answered:\n${outputTail(proc)}`);
    }
    try {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  proc.child.kill('SIGKILL');
  throw new Error(`${url}${path} did not answer 2xx within ${timeoutMs} ms:\n${outputTail(proc)}`);
}

/** Polls the process's stdout until it contains `text`; throws when the process exits first or after `timeoutMs`. */
export async function waitForOutput(proc: AppProcess, text: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!proc.stdout().includes(text)) {
    if (!proc.running) {
      await proc.exited;
      throw new Error(`process exited with ${proc.child.exitCode ?? proc.child.signalCode} before logging "${text}":\n${outputTail(proc)}`);
    }
    if (Date.now() > deadline) throw new Error(`process did not log "${text}" within ${timeoutMs} ms:\n${outputTail(proc)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Sends `signal` (SIGTERM by default) and waits for the exit; a process still running after `timeoutMs`
 * is SIGKILLed. Resolves with the exit code and, for a non-zero exit, the last log lines.
 */
export async function stopAppProcess(
  proc: AppProcess,
  options: { signal?: NodeJS.Signals; timeoutMs?: number } = {},
): Promise<{ code: number | null; log: string }> {
  if (proc.running) {
    proc.child.kill(options.signal ?? 'SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    await proc.exited;
    clearTimeout(timer);
  }
  const code = await proc.exited;
  return { code, log: code === 0 ? '' : outputTail(proc, 15) };
}

/** Runs a one-shot command (migrations, consistency check) to its end. */
export async function runAppCommand(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawnAppProcess(script, env, { args });
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}
