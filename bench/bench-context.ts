/**
 * What every scenario gets: the upstream, the systems in front of it (the app among them), a scratch
 * directory, the mode, progress output (stderr; stdout carries the report) and the rows it fills.
 */
import type { UpstreamRegistry } from '../test/support/upstream-registry.js';
import type { BenchRow } from './report/bench-report.js';
import type { AppSystem } from './systems/app.system.js';
import type { PullSystem, SystemId } from './systems/pull-system.js';

export interface BenchContext {
  upstream: UpstreamRegistry;
  /** The systems measured, direct first; peers whose binary is missing are absent. */
  systems: PullSystem[];
  app: AppSystem;
  workDir: string;
  smoke: boolean;
  rows: RowBook;
  /** Aborted when the benchmark stops: short-lived clients (skopeo, wrk) are killed with it. */
  signal: AbortSignal;
  progress(message: string): void;
}

/** The report's rows in the order they were declared; values recorded per system and round. */
export class RowBook {
  private readonly byId = new Map<string, BenchRow>();

  declare(id: string, title: string, unit: string, note?: string): BenchRow {
    let row = this.byId.get(id);
    if (!row) {
      row = { id, title, unit, series: {}, ...(note ? { note } : {}) };
      this.byId.set(id, row);
    }
    return row;
  }

  get(id: string): BenchRow {
    const row = this.byId.get(id);
    if (!row) throw new Error(`no benchmark row ${id}`);
    return row;
  }

  record(id: string, system: SystemId, round: number, value: number): void {
    const series = (this.get(id).series[system] ??= []);
    series[round] = value;
  }

  /** Adds a sentence to the row's note (what happened during the run that a reader should know). */
  addNote(id: string, text: string): void {
    const row = this.get(id);
    row.note = row.note ? `${row.note}; ${text}` : text;
  }

  skip(id: string, reason: string): void {
    this.get(id).skipped = reason;
  }

  all(): BenchRow[] {
    return [...this.byId.values()];
  }
}
