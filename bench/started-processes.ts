/**
 * Every child process the benchmark starts itself, by PID, so it can stop each one (and nothing else)
 * when it finishes, fails or is interrupted. Children run in their own process group (`detached`), so a
 * child with workers of its own (nginx's master) is stopped with its workers: the signal goes to the
 * group whose id is the PID we started.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';

export interface StartedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** True until the process exits. */
  readonly running: boolean;
}

export class StartedProcesses {
  private readonly live = new Map<number, StartedProcess>();

  /** `onStart` hears of every process started (the benchmark logs name and PID). */
  constructor(private readonly onStart?: (started: StartedProcess) => void) {}

  /** Spawns `command` in its own process group and remembers its PID until it exits. */
  spawn(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): StartedProcess {
    const child = spawn(command, args, { ...options, detached: true });
    const spawnFailed = once(child, 'error').then(([err]) => {
      throw new Error(`${name}: could not start ${command}: ${String(err)}`);
    });
    spawnFailed.catch(() => undefined);
    if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
    const pid = child.pid;
    let running = true;
    const exited = new Promise<number | string>((resolve) =>
      child.once('exit', (code, signal) => {
        running = false;
        this.live.delete(pid);
        resolve(code ?? signal ?? 'unknown');
      }),
    );
    const started: StartedProcess = {
      name,
      pid,
      child,
      exited,
      get running() {
        return running;
      },
    };
    this.live.set(pid, started);
    this.onStart?.(started);
    return started;
  }

  /** Asks one process (and its group) to stop with `signal`; SIGKILLs the group after `graceMs`. */
  async stop(started: StartedProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<number | string> {
    if (!started.running) return started.exited;
    signalGroup(started.pid, signal);
    const timer = setTimeout(() => signalGroup(started.pid, 'SIGKILL'), graceMs);
    try {
      return await started.exited;
    } finally {
      clearTimeout(timer);
      // Workers of a group leader that exited first (none expected) do not outlive the benchmark.
      signalGroup(started.pid, 'SIGKILL');
    }
  }

  /** Stops every process still running, in parallel. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.live.values()].map((p) => this.stop(p)));
  }

  /** Last resort on process exit: SIGKILL every group still known (synchronous). */
  killAllNow(): void {
    for (const pid of this.live.keys()) signalGroup(pid, 'SIGKILL');
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}
