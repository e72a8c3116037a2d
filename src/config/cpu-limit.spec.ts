import { describe, expect, it } from '@jest/globals';
import { usableCpus } from './cpu-limit.js';

/** A file system of a few files: every other path is unreadable. */
const files = (entries: Record<string, string>) => (path: string) => entries[path];

const V2_MOUNT = '24 18 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n';
const V1_MOUNTS =
  '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n' +
  '31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n' +
  '34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n';

describe('usableCpus', () => {
  it('is every available CPU when no control group sets a quota, or none can be read', () => {
    expect(usableCpus({ available: 8, read: files({}) })).toBe(8);
    expect(
      usableCpus({
        available: 8,
        read: files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT, '/sys/fs/cgroup/cpu.max': 'max 100000\n' }),
      }),
    ).toBe(8);
    expect(
      usableCpus({
        available: 8,
        read: files({
          '/proc/self/cgroup': '4:memory:/\n2:cpu,cpuacct:/\n',
          '/proc/self/mountinfo': V1_MOUNTS,
          '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
          '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
        }),
      }),
    ).toBe(8);
  });

  it("caps at a container's cgroup v2 quota, rounded up (a pod limited to 1.5 CPUs gets 2)", () => {
    const read = (quota: string) => files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT, '/sys/fs/cgroup/cpu.max': `${quota} 100000\n` });
    expect(usableCpus({ available: 32, read: read('200000') })).toBe(2);
    expect(usableCpus({ available: 32, read: read('150000') })).toBe(2);
    expect(usableCpus({ available: 32, read: read('50000') })).toBe(1);
    expect(usableCpus({ available: 32, read: read('1000') })).toBe(1);
    // A quota above what the process may run on does not add CPUs.
    expect(usableCpus({ available: 4, read: read('1600000') })).toBe(4);
  });

  it("takes the lowest quota of the process's group and its parents (cgroup v2 without a namespace)", () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods.slice/pod1/app\n',
      '/proc/self/mountinfo': V2_MOUNT,
      '/sys/fs/cgroup/kubepods.slice/pod1/app/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/kubepods.slice/pod1/cpu.max': '300000 100000\n',
      '/sys/fs/cgroup/kubepods.slice/cpu.max': '1600000 100000\n',
    });
    expect(usableCpus({ available: 16, read })).toBe(3);
  });

  it('reads the cgroup v1 cpu controller, also where a container mounts its own group as the top', () => {
    const read = files({
      '/proc/self/cgroup': '11:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n',
      '/proc/self/mountinfo': V1_MOUNTS.replace('0:28 / /sys/fs/cgroup/cpu,cpuacct', '0:28 /docker/abc /sys/fs/cgroup/cpu,cpuacct'),
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '250000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(usableCpus({ available: 64, read })).toBe(3);
  });

  it('ignores files it cannot make sense of', () => {
    const read = files({
      '/proc/self/cgroup': 'garbage\n0::/\n',
      '/proc/self/mountinfo': `not a mount line\n${V2_MOUNT}`,
      '/sys/fs/cgroup/cpu.max': 'lots 0\n',
    });
    expect(usableCpus({ available: 6, read })).toBe(6);
  });

  it('reads this machine without failing', () => {
    const cpus = usableCpus();
    expect(Number.isInteger(cpus)).toBe(true);
    expect(cpus).toBeGreaterThanOrEqual(1);
  });
});
