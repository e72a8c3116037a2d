/**
 * CPU time of the processes that serve a system, from /proc: user + system time of every live process in
 * the given process groups (a StartedProcess is a group of its own: nginx's master and its workers, the
 * app) and of single processes (an s3rver child of the benchmark, which shares the benchmark's group).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    ticksPerSecond = Number.isFinite(value) && value > 0 ? value : 100;
  }
  return ticksPerSecond;
}

/** utime + stime (fields 14 and 15) and the process group (field 5) of one /proc/<pid>/stat. */
function statOf(pid: string): { pgrp: number; ticks: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: fields are counted after its closing parenthesis.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pgrp: Number(fields[2]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined; // exited meanwhile
  }
}

/** The live processes of process group `pgrp` (an app with HTTP workers: the primary and its workers). */
export function processesInGroup(pgrp: number): number[] {
  return readdirSync('/proc')
    .filter((pid) => /^\d+$/.test(pid) && statOf(pid)?.pgrp === pgrp)
    .map(Number);
}

/** CPU seconds used so far by the processes in `groups` (process group ids) and the processes `pids`. */
export function cpuSecondsOf(groups: readonly number[], pids: readonly number[] = []): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = statOf(pid);
    if (stat && (groups.includes(stat.pgrp) || pids.includes(Number(pid)))) ticks += stat.ticks;
  }
  return ticks / clockTicks();
}

/**
 * Runs `work` and returns the CPU seconds spent meanwhile by the processes `ids` names, each taken as a
 * process and as a process group (so nginx's workers count with their master), read before and after.
 */
export async function cpuSecondsDuring<T>(ids: () => readonly number[], work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const cpu = () => {
    const current = ids();
    return cpuSecondsOf(current, current);
  };
  const before = cpu();
  const result = await work();
  return { result, seconds: cpu() - before };
}

/** The whole machine's CPU time so far, from the first line of /proc/stat. */
export interface MachineCpu {
  /** Seconds every CPU spent running anything: user and nice (guest time is inside them), system, irq, softirq. */
  busy: number;
  /** Seconds every CPU spent with nothing to run: idle, and waiting for I/O. */
  idle: number;
}

/** The machine's CPU time so far (all CPUs together); the difference of two readings is what happened between them. */
export function machineCpu(stat = readFileSync('/proc/stat', 'utf8')): MachineCpu {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no cpu line');
  const [user, nice, system, idle, iowait, irq, softirq] = line.trim().split(/\s+/).slice(1, 8).map(Number);
  const ticks = clockTicks();
  return { busy: (user + nice + system + irq + softirq) / ticks, idle: (idle + iowait) / ticks };
}
