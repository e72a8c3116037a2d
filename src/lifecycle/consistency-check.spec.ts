import { parseArguments, UsageError } from './consistency-check.js';
import { forEachConcurrently } from './cache-destruction.service.js';

describe('cache:check arguments', () => {
  it('defaults to a read-only, human-readable check', () => {
    expect(parseArguments([])).toEqual({ fix: false, json: false });
  });

  it('reads --fix, --json and the grace period in both spellings', () => {
    expect(parseArguments(['--fix', '--json', '--grace-period-ms', '0'])).toEqual({ fix: true, json: true, gracePeriodMs: 0 });
    expect(parseArguments(['--grace-period-ms=60000'])).toEqual({ fix: false, json: false, gracePeriodMs: 60000 });
  });

  it.each([[['--force']], [['--grace-period-ms']], [['--grace-period-ms', 'soon']], [['fix']]])('refuses %j', (argv) => {
    expect(() => parseArguments(argv)).toThrow(UsageError);
  });
});

describe('forEachConcurrently', () => {
  it('handles every item, never more than `concurrency` at a time', async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    await forEachConcurrently([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5)); // deliberate: each item takes a while, so the workers overlap
      seen.push(n);
      running -= 1;
    });
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(peak).toBe(3);
    await forEachConcurrently([], 3, async () => undefined);
  });
});
