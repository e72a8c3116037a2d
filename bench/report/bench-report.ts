/**
 * What a benchmark run produces: rows of per-round values by system, the SPEC section 8 target of each
 * row and whether the median meets it. Ratios are taken round by round against the baseline measured in
 * the same round, and the median of those ratios is reported.
 */
import { median, pairedRatios } from '../statistics.js';
import type { SystemId } from '../systems/pull-system.js';

export type Comparison = '<=' | '>=' | '<' | '==';

export interface TargetResult {
  /** The SPEC wording, e.g. `app <= 1.05 x direct`. */
  text: string;
  /** The number compared (a median ratio or a median value); null when it could not be measured. */
  measured: number | null;
  met: boolean | null;
}

export interface BenchRow {
  id: string;
  title: string;
  unit: string;
  /** Per-round values by system, in round order. */
  series: Partial<Record<SystemId, number[]>>;
  target?: TargetResult;
  /** Why the row was not measured (smoke mode, a missing service). */
  skipped?: string;
  note?: string;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  command: string;
  mode: 'full' | 'smoke';
  /** The scenarios that ran (`--only`). */
  scenarios: string[];
  rounds: number;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    kernel: string;
    node: string;
    /** 1-minute load average when the run started and ended (other work on the machine skews ratios). */
    loadAverage: { atStart: number; atEnd: number };
  };
  versions: Record<string, string>;
  appConfiguration: string;
  loadTool: string;
  /** Peers left out, with the reason (a binary that is not installed). */
  skippedSystems: Partial<Record<SystemId, string>>;
  rows: BenchRow[];
  notes: string[];
}

/** Median of per-round `system / baseline` ratios, or undefined when either series is missing. */
export function medianRatio(row: BenchRow, system: SystemId, baseline: SystemId): number | undefined {
  const values = row.series[system];
  const base = row.series[baseline];
  if (!values?.length || !base?.length) return undefined;
  const ratios = pairedRatios(values, base);
  return ratios.length ? median(ratios) : undefined;
}

export function compare(measured: number, op: Comparison, limit: number): boolean {
  // Ratios are printed with two decimals; compare at a precision slightly finer than that.
  const epsilon = 1e-9;
  switch (op) {
    case '<=':
      return measured <= limit + epsilon;
    case '>=':
      return measured >= limit - epsilon;
    case '<':
      return measured < limit;
    case '==':
      return Math.abs(measured - limit) <= epsilon;
  }
}

/** Target on the median ratio of `system` to `baseline` (both in this row). */
export function ratioTarget(row: BenchRow, text: string, op: Comparison, limit: number, system: SystemId = 'app', baseline: SystemId = 'direct'): TargetResult {
  const measured = medianRatio(row, system, baseline);
  return measured === undefined || !Number.isFinite(measured) ? { text, measured: null, met: null } : { text, measured, met: compare(measured, op, limit) };
}

/** Target on the median value of `system` in this row. */
export function valueTarget(row: BenchRow, text: string, op: Comparison, limit: number, system: SystemId = 'app'): TargetResult {
  const values = row.series[system];
  if (!values?.length) return { text, measured: null, met: null };
  const measured = median(values);
  return { text, measured, met: compare(measured, op, limit) };
}

/** Target on the ratio of this row's median to another row's median (same system). */
export function crossRowTarget(row: BenchRow, baselineRow: BenchRow, text: string, op: Comparison, limit: number, system: SystemId = 'app'): TargetResult {
  const values = row.series[system];
  const base = baselineRow.series[system];
  if (!values?.length || !base?.length) return { text, measured: null, met: null };
  const measured = median(values) / median(base);
  return { text, measured, met: compare(measured, op, limit) };
}
