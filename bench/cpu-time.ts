/**
 * CPU time of a system's processes, from /proc: user + system time of every process in the process
 * groups the system started (its own processes were started as group leaders, so nginx's workers and any
 * helper children count too), all threads included (V8's garbage collector, libuv's pool).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** Seconds of CPU used so far by the live processes `groups` names and every process in their process groups. */
export function cpuSecondsOfGroups(groups: readonly number[]): number {
  if (groups.length === 0) return 0;
  const wanted = new Set(groups);
  let ticks = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name (which may contain spaces): state ppid pgrp ... utime(14) stime(15).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (!wanted.has(Number(name)) && !wanted.has(Number(fields[2]))) continue;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS_PER_SECOND;
}

/** Runs `work` and returns the CPU seconds the groups spent meanwhile (groups are read before and after). */
export async function cpuSecondsDuring<T>(groups: () => readonly number[], work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const before = cpuSecondsOfGroups(groups());
  const result = await work();
  return { result, seconds: cpuSecondsOfGroups(groups()) - before };
}
