/**
 * How the built processes tune their memory at startup (src/process-lifecycle.ts), checked in a fresh
 * child process, since glibc's allocator state belongs to a process and its history.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const LIFECYCLE = pathToFileURL(resolve('dist/src/process-lifecycle.js')).href;

/**
 * A child (`--expose-gc`) that allocates 8 MiB as 64 KiB buffers (the size of a socket read's buffer), fills
 * them, drops them and collects them, 8 times after one warm-up cycle, and prints the minor page faults per
 * MiB allocated. With glibc's default trim threshold (128 KiB) the freed top of the heap goes back to the
 * kernel after each cycle and is faulted in again, page by page, in the next; tuned (thresholds moved by the
 * freed 8 MiB block), glibc keeps it. What a receiving app gains depends on how much garbage V8 lets pile up
 * between collections (a stream's buffers are freed in bursts): that varies with the machine, this does not.
 */
const ALLOCATOR = `
import { readFileSync } from 'node:fs';
const { tuneMemoryAllocator } = await import(${JSON.stringify(LIFECYCLE)});
if (process.argv[1] === 'tuned') tuneMemoryAllocator();
const minorFaults = () => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
// Full collections, with time for the array buffers' backing stores to be freed.
const collect = async () => {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};
const cycle = () => {
  let held = [];
  for (let i = 0; i < 128; i++) held.push(Buffer.allocUnsafeSlow(64 * 1024).fill(1));
  held = null;
};
await collect();
cycle();
await collect();
const before = minorFaults();
for (let i = 0; i < 8; i++) {
  cycle();
  await collect();
}
process.stdout.write(String((minorFaults() - before) / 64));
`;

const onLinux = process.platform === 'linux' ? it : it.skip;

describe('process memory tuning', () => {
  onLinux(
    'tuneMemoryAllocator: freed 64 KiB buffers stay with the allocator and are reused without faulting in fresh pages; untuned, most are faulted in again',
    () => {
      const faultsPerMiB = (mode: 'tuned' | 'untuned') =>
        Number(execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', ALLOCATOR, mode], { encoding: 'utf8', timeout: 60_000 }));
      // Measured here: tuned 0.1-1.2 faults per MiB, untuned 226-232 (of 256 pages per MiB).
      expect(faultsPerMiB('tuned')).toBeLessThan(16);
      expect(faultsPerMiB('untuned')).toBeGreaterThan(128);
    },
    90_000,
  );
});
