import {
  addFinding,
  describeConsistencyReport,
  emptyFinding,
  FINDING_SAMPLES,
  formatBytes,
  formatDuration,
  isConsistent,
  type StorageConsistencyReport,
} from './storage-consistency.js';

function report(overrides: Partial<StorageConsistencyReport> = {}): StorageConsistencyReport {
  return {
    gracePeriodMs: 3_600_000,
    storedObjects: 3,
    liveEntries: 4,
    entriesWithoutObject: emptyFinding(),
    objectsWithoutEntry: emptyFinding(),
    recentObjectsWithoutEntry: emptyFinding(),
    staleTemporaryObjects: emptyFinding(),
    recentTemporaryObjects: emptyFinding(),
    ...overrides,
  };
}

describe('storage consistency report', () => {
  it('is consistent with nothing found, and with only recent leftovers (writes possibly in progress)', () => {
    expect(isConsistent(report())).toBe(true);
    const recent = report();
    addFinding(recent.recentObjectsWithoutEntry, 'sha256:aa', 10);
    addFinding(recent.recentTemporaryObjects, 'tmp');
    expect(isConsistent(recent)).toBe(true);
    expect(describeConsistencyReport(recent)).toContain(
      'not counted (younger than 1 h, possibly writes in progress): 1 object(s) without entry, 1 temporary object(s)',
    );
  });

  it.each(['entriesWithoutObject', 'objectsWithoutEntry', 'staleTemporaryObjects'] as const)('is inconsistent with one of %s', (kind) => {
    const r = report();
    addFinding(r[kind], 'x');
    expect(isConsistent(r)).toBe(false);
    expect(describeConsistencyReport(r)).toMatch(/INCONSISTENT\n$/);
  });

  it('counts every finding and bytes but keeps a bounded number of samples', () => {
    const finding = emptyFinding();
    for (let i = 0; i < FINDING_SAMPLES + 5; i++) addFinding(finding, `sample ${i}`, 100);
    expect(finding.count).toBe(FINDING_SAMPLES + 5);
    expect(finding.bytes).toBe(100 * (FINDING_SAMPLES + 5));
    expect(finding.samples).toHaveLength(FINDING_SAMPLES);
    const text = describeConsistencyReport(report({ objectsWithoutEntry: finding }));
    expect(text).toContain(`objects without a cache entry, older than 1 h: ${FINDING_SAMPLES + 5} (2.4 KiB)`);
    expect(text).toContain('  ... and 5 more');
  });

  it('describes what a repair did', () => {
    const text = describeConsistencyReport(
      report({ repaired: { markedEntries: 1, deletedObjects: 2, deletedBytes: 3 * 1024 ** 2, deletedTemporaryObjects: 4 } }),
    );
    expect(text).toContain('repaired: 1 entry marked for destruction, 2 object(s) deleted (3.0 MiB), 4 temporary object(s) deleted');
  });

  it('formats sizes and durations for people', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(300 * 1024 ** 2)).toBe('300.0 MiB');
    expect(formatBytes(5 * 1024 ** 4)).toBe('5.0 TiB');
    expect(formatDuration(3_600_000)).toBe('1 h');
    expect(formatDuration(120_000)).toBe('2 min');
    expect(formatDuration(1500)).toBe('1.5 s');
    expect(formatDuration(0)).toBe('0 s');
  });
});
