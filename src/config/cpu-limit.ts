import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { posix } from 'node:path';

/** Reads a file's text; undefined when it cannot be read. */
export type ReadText = (path: string) => string | undefined;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * How many CPUs this process can keep busy: the CPUs it may run on (`availableParallelism()`), capped by
 * its control group's CPU quota, rounded up. A container's CPU limit (Kubernetes' `resources.limits.cpu`,
 * `docker run --cpus`) is such a quota, and Node does not read it: on a 32-core node a pod limited to 2
 * CPUs still sees 32. The quota is cgroup v2's `cpu.max` or v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us`,
 * of the process's own group and every parent up to the mount (the lowest counts).
 */
export function usableCpus(options: { available?: number; read?: ReadText } = {}): number {
  const available = options.available ?? availableParallelism();
  const quota = cpuQuota(options.read ?? readText);
  return quota === undefined ? available : Math.max(1, Math.min(available, Math.ceil(quota)));
}

/** The lowest CPU quota (in CPUs) of this process's control groups; undefined when none is set or readable. */
function cpuQuota(read: ReadText): number | undefined {
  const groups = parseProcCgroup(read('/proc/self/cgroup') ?? '');
  let lowest: number | undefined;
  for (const mount of parseCgroupMounts(read('/proc/self/mountinfo') ?? '')) {
    const path = mount.version === 2 ? groups.unified : groups.cpu;
    if (path === undefined) continue;
    for (const dir of groupDirs(mount, path)) {
      const quota =
        mount.version === 2
          ? quotaV2(read(posix.join(dir, 'cpu.max')))
          : quotaV1(read(posix.join(dir, 'cpu.cfs_quota_us')), read(posix.join(dir, 'cpu.cfs_period_us')));
      if (quota !== undefined && (lowest === undefined || quota < lowest)) lowest = quota;
    }
  }
  return lowest;
}

interface CgroupMount {
  version: 1 | 2;
  /** Where it is mounted. */
  mountPoint: string;
  /** Which group of the hierarchy the mount shows at its top (`/` unless a container mounted its own). */
  root: string;
}

/** The cgroup2 mount and the v1 mounts of the `cpu` controller, from /proc/self/mountinfo. */
function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const fields = before.split(' ');
    const [fsType, , superOptions = ''] = after.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (!root || !mountPoint) continue;
    if (fsType === 'cgroup2') mounts.push({ version: 2, mountPoint, root });
    else if (fsType === 'cgroup' && superOptions.split(',').includes('cpu')) mounts.push({ version: 1, mountPoint, root });
  }
  return mounts;
}

/** This process's group in the unified (v2) hierarchy and in the v1 hierarchy holding `cpu`. */
function parseProcCgroup(text: string): { unified?: string; cpu?: string } {
  const groups: { unified?: string; cpu?: string } = {};
  for (const line of text.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!match) continue;
    if (match[1] === '0' && match[2] === '') groups.unified = match[3];
    else if (match[2].split(',').includes('cpu')) groups.cpu = match[3];
  }
  return groups;
}

/** The directories of the process's group and of its parents, inside the mount (the group first). */
function groupDirs(mount: CgroupMount, path: string): string[] {
  // Inside a container the mount usually shows the container's own group as its top.
  const root = mount.root.replace(/\/$/, '');
  const relative = path === mount.root ? '' : root && path.startsWith(`${root}/`) ? path.slice(root.length) : path;
  const dirs: string[] = [];
  let current = posix.join(mount.mountPoint, relative);
  for (;;) {
    dirs.push(current);
    if (current === mount.mountPoint || !current.startsWith(mount.mountPoint)) return dirs;
    current = posix.dirname(current);
  }
}

/** cgroup v2 `cpu.max`: "<quota> <period>" or "max <period>". */
function quotaV2(text: string | undefined): number | undefined {
  const [quota, period] = (text ?? '').trim().split(/\s+/);
  return ratio(quota, period);
}

/** cgroup v1: quota -1 means none. */
function quotaV1(quota: string | undefined, period: string | undefined): number | undefined {
  return ratio(quota?.trim(), period?.trim());
}

function ratio(quota: string | undefined, period: string | undefined): number | undefined {
  if (!quota || !period || !/^\d+$/.test(quota) || !/^\d+$/.test(period)) return undefined;
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}
