/**
 * What the orphan cleanup and the consistency check find when they compare the blob store with the
 * cache_entries table, and how it is reported.
 */

/** One kind of finding: how many, how many bytes (when known), and a few examples. */
export interface ConsistencyFinding {
  count: number;
  bytes: number;
  samples: string[];
}

export interface StorageConsistencyReport {
  /** Objects and temporary objects younger than this are left alone (possibly a write in progress). */
  gracePeriodMs: number;
  /** Committed objects listed. */
  storedObjects: number;
  /** Live (`default`) cache entries checked. */
  liveEntries: number;
  /** Live entries whose object is missing from the store (samples: `<digest> (entry <id>)`). */
  entriesWithoutObject: ConsistencyFinding;
  /** Committed objects no cache entry references, older than the grace period. */
  objectsWithoutEntry: ConsistencyFinding;
  /** Committed objects no cache entry references yet, within the grace period (a fill between commit and row). */
  recentObjectsWithoutEntry: ConsistencyFinding;
  /** Temporary objects (writes that never finished) older than the grace period. */
  staleTemporaryObjects: ConsistencyFinding;
  /** Temporary objects within the grace period (writes that may be in progress). */
  recentTemporaryObjects: ConsistencyFinding;
  /** What was repaired, when the scan ran as the cleanup (undefined for a read-only check). */
  repaired?: RepairSummary;
}

export interface RepairSummary {
  /** Live entries without object, marked `pending_destruction`. */
  markedEntries: number;
  /** Unreferenced objects deleted, and their bytes. */
  deletedObjects: number;
  deletedBytes: number;
  deletedTemporaryObjects: number;
}

/** How many examples a finding keeps. */
export const FINDING_SAMPLES = 20;

export function emptyFinding(): ConsistencyFinding {
  return { count: 0, bytes: 0, samples: [] };
}

export function addFinding(finding: ConsistencyFinding, sample: string, bytes = 0): void {
  finding.count += 1;
  finding.bytes += bytes;
  if (finding.samples.length < FINDING_SAMPLES) finding.samples.push(sample);
}

/** Consistent: no live entry without its object, no unreferenced object and no temporary object past the grace period. */
export function isConsistent(report: StorageConsistencyReport): boolean {
  return report.entriesWithoutObject.count === 0 && report.objectsWithoutEntry.count === 0 && report.staleTemporaryObjects.count === 0;
}

/** The human-readable summary the `cache:check` command prints. */
export function describeConsistencyReport(report: StorageConsistencyReport): string {
  const lines: string[] = [];
  const grace = formatDuration(report.gracePeriodMs);
  lines.push(`checked ${report.liveEntries} live cache entr${report.liveEntries === 1 ? 'y' : 'ies'} and ${report.storedObjects} stored object(s)`);
  const finding = (label: string, f: ConsistencyFinding, withBytes: boolean) => {
    lines.push(`${label}: ${f.count}${withBytes && f.count ? ` (${formatBytes(f.bytes)})` : ''}`);
    for (const sample of f.samples) lines.push(`  ${sample}`);
    if (f.count > f.samples.length) lines.push(`  ... and ${f.count - f.samples.length} more`);
  };
  finding('live entries whose object is missing', report.entriesWithoutObject, false);
  finding(`objects without a cache entry, older than ${grace}`, report.objectsWithoutEntry, true);
  finding(`temporary objects older than ${grace}`, report.staleTemporaryObjects, false);
  if (report.recentObjectsWithoutEntry.count || report.recentTemporaryObjects.count) {
    lines.push(
      `not counted (younger than ${grace}, possibly writes in progress): ${report.recentObjectsWithoutEntry.count} object(s) without entry, ` +
        `${report.recentTemporaryObjects.count} temporary object(s)`,
    );
  }
  if (report.repaired) {
    const r = report.repaired;
    lines.push(
      `repaired: ${r.markedEntries} entr${r.markedEntries === 1 ? 'y' : 'ies'} marked for destruction, ` +
        `${r.deletedObjects} object(s) deleted (${formatBytes(r.deletedBytes)}), ${r.deletedTemporaryObjects} temporary object(s) deleted`,
    );
  }
  lines.push(isConsistent(report) ? 'consistent' : 'INCONSISTENT');
  return `${lines.join('\n')}\n`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}
