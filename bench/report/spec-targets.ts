/**
 * SPEC section 8's quality bars, attached to the rows that measure them. Rows without a bar (small image,
 * multi-arch index, manifest by digest) are reported for information: the SPEC states its pull bars for
 * the 200 MiB image.
 */
import type { RowBook } from '../bench-context.js';
import { compare, crossRowTarget, medianRatio, ratioTarget, valueTarget, type BenchRow, type TargetResult } from './bench-report.js';

type TargetRule = (row: BenchRow, rows: RowBook) => TargetResult;

const RULES: Record<string, TargetRule> = {
  'cold-pull-big': (row) => bothTargets(ratioTarget(row, 'app <= 1.10 x direct', '<=', 1.1), nginxPlus(row, 0.05)),
  'warm-pull-big': (row) => ratioTarget(row, 'app <= 1.00 x direct', '<=', 1.0),
  'cpu-cold-big': (row) => ratioTarget(row, "app <= Distribution's", '<=', 1.0, 'app', 'distribution'),
  'cpu-warm-big': (row) => ratioTarget(row, "app <= 1.5 x nginx's", '<=', 1.5, 'app', 'nginx'),
  'concurrent-wall': (row) => ratioTarget(row, 'app <= 1.05 x 8 direct', '<=', 1.05),
  'concurrent-upstream-bytes': (row) => valueTarget(row, 'app <= 1.00 (each blob once)', '<=', 1.0),
  'concurrent-max-gets': (row) => valueTarget(row, 'app == 1 GET per blob', '==', 1),
  'replicas-wall': (row) => valueTarget(row, 'app, 2 replicas <= 1.10 x 1 replica', '<=', 1.1),
  'replicas-upstream-bytes': (row) => valueTarget(row, 'app, 2 replicas <= 1.00 (each blob once)', '<=', 1.0),
  'blob-get': (row) => ratioTarget(row, "app >= 1.00 x nginx's", '>=', 1.0, 'app', 'nginx'),
  'manifest-rate-tag': (row) =>
    bothTargets(ratioTarget(row, 'app >= 5 x direct', '>=', 5), ratioTarget(row, "app >= 0.30 x nginx's", '>=', 0.3, 'app', 'nginx')),
  'memory-cold': (row) => valueTarget(row, 'app < 256 MiB', '<', 256),
  'memory-warm': (row) => valueTarget(row, 'app < 256 MiB', '<', 256),
  'latency-1000000': (row, rows) => crossRowTarget(row, rows.get('latency-1000'), 'app <= 1.2 x (1,000 rows)', '<=', 1.2),
};

/** Two bars on one row: met when both are; the first one that misses (or cannot be measured) is shown. */
function bothTargets(first: TargetResult, second: TargetResult): TargetResult {
  const text = `${first.text}; ${second.text}`;
  if (first.met === false || first.met === null) return { ...first, text };
  return { ...second, text };
}

/** Cold pull: the app's ratio to direct no more than nginx's ratio + `slack` (medians of the rounds). */
function nginxPlus(row: BenchRow, slack: number): TargetResult {
  const text = `app/direct <= nginx/direct + ${slack.toFixed(2)}`;
  const app = medianRatio(row, 'app', 'direct');
  const nginx = medianRatio(row, 'nginx', 'direct');
  if (app === undefined || nginx === undefined) return { text, measured: null, met: null };
  return { text, measured: app - nginx, met: compare(app - nginx, '<=', slack) };
}

export function applySpecTargets(rows: RowBook): void {
  for (const row of rows.all()) {
    const rule = RULES[row.id];
    if (rule && !row.skipped) row.target = rule(row, rows);
    else if (rule) row.target = { text: rule(row, rows).text, measured: null, met: null };
  }
}
