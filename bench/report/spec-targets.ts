/**
 * SPEC section 8's quality bars, attached to the rows that measure them. Rows without a bar (small image,
 * multi-arch index, manifest by digest) are reported for information: the SPEC states its pull bars for
 * the 200 MiB image.
 */
import type { RowBook } from '../bench-context.js';
import { crossRowTarget, ratioTarget, valueTarget, type BenchRow, type TargetResult } from './bench-report.js';

type TargetRule = (row: BenchRow, rows: RowBook) => TargetResult;

const RULES: Record<string, TargetRule> = {
  'cold-pull-big': (row) => ratioTarget(row, 'app <= 1.05 x direct', '<=', 1.05),
  'warm-pull-big': (row) => ratioTarget(row, 'app <= 1.00 x direct', '<=', 1.0),
  'concurrent-wall': (row) => ratioTarget(row, 'app <= 1.00 x 8 direct', '<=', 1.0),
  'concurrent-upstream-bytes': (row) => valueTarget(row, 'app <= 1.00 (each blob once)', '<=', 1.0),
  'concurrent-max-gets': (row) => valueTarget(row, 'app == 1 GET per blob', '==', 1),
  'replicas-wall': (row) => valueTarget(row, 'app, 2 replicas <= 1.10 x 1 replica', '<=', 1.1),
  'replicas-upstream-bytes': (row) => valueTarget(row, 'app, 2 replicas <= 1.00 (each blob once)', '<=', 1.0),
  'blob-get': (row) => ratioTarget(row, 'app >= 1.00 x direct', '>=', 1.0),
  'manifest-rate-tag': (row) => ratioTarget(row, 'app >= 5 x direct', '>=', 5),
  'memory-cold': (row) => valueTarget(row, 'app < 256 MiB', '<', 256),
  'memory-warm': (row) => valueTarget(row, 'app < 256 MiB', '<', 256),
  'latency-1000000': (row, rows) => crossRowTarget(row, rows.get('latency-1000'), 'app <= 1.2 x (1,000 rows)', '<=', 1.2),
};

export function applySpecTargets(rows: RowBook): void {
  for (const row of rows.all()) {
    const rule = RULES[row.id];
    if (rule && !row.skipped) row.target = rule(row, rows);
    else if (rule) row.target = { text: rule(row, rows).text, measured: null, met: null };
  }
}
