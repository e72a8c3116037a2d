/**
 * The report as tables: medians by system, ratios (median of per-round ratios), the SPEC target and
 * whether it is met; then every per-round value. Plain text for stdout, Markdown for the README.
 */
import { median } from '../statistics.js';
import { SYSTEM_LABELS, type SystemId } from '../systems/pull-system.js';
import { medianRatio, type BenchReport, type BenchRow } from './bench-report.js';

const SYSTEMS: SystemId[] = ['direct', 'app', 'distribution', 'nginx', 'app-x-accel', 'app-presigned'];
const RATIOS: [SystemId, SystemId, string][] = [
  ['app', 'direct', 'app/direct'],
  ['distribution', 'direct', 'dist/direct'],
  ['nginx', 'direct', 'nginx/direct'],
  ['app', 'distribution', 'app/dist'],
  ['app', 'nginx', 'app/nginx'],
  ['app-x-accel', 'nginx', 'x-accel/nginx'],
  ['app-presigned', 'nginx', 'presigned/nginx'],
];

/** Three significant digits, no exponent. */
export function formatNumber(value: number | undefined | null): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toString();
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function resultCell(row: BenchRow): string {
  if (row.skipped) return `skipped: ${row.skipped}`;
  if (!row.target) return 'info (no SPEC target)';
  if (row.target.met === null) return 'not measured';
  return `${row.target.met ? 'met' : 'MISSED'} (${formatNumber(row.target.measured)})`;
}

function summaryRows(report: BenchReport): string[][] {
  const header = ['Metric', ...SYSTEMS.map((s) => SYSTEM_LABELS[s]), ...RATIOS.map(([, , label]) => label), 'SPEC target', 'Result'];
  const rows = report.rows.map((row) => {
    const medians = SYSTEMS.map((s) => (row.skipped ? '-' : formatNumber(row.series[s]?.length ? median(row.series[s]!) : undefined)));
    const ratios = RATIOS.map(([a, b]) => (row.skipped ? '-' : formatNumber(medianRatio(row, a, b))));
    return [`${row.title} (${row.unit})`, ...medians, ...ratios, row.target?.text ?? '-', resultCell(row)];
  });
  return [header, ...rows];
}

function perRoundRows(report: BenchReport): string[][] {
  const header = ['Metric', 'System', ...Array.from({ length: report.rounds }, (_, i) => `round ${i + 1}`), 'median'];
  const rows: string[][] = [];
  for (const row of report.rows) {
    if (row.skipped) continue;
    for (const system of SYSTEMS) {
      const values = row.series[system];
      if (!values?.length) continue;
      const cells = Array.from({ length: report.rounds }, (_, i) => formatNumber(values[i]));
      rows.push([`${row.title} (${row.unit})`, SYSTEM_LABELS[system], ...cells, formatNumber(median(values))]);
    }
  }
  return [header, ...rows];
}

function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join('\n');
}

function markdownTable(rows: string[][]): string {
  const escape = (cell: string) => cell.replace(/\|/g, '\\|');
  const line = (r: string[]) => `| ${r.map(escape).join(' | ')} |`;
  const align = `|${rows[0].map((_, c) => (c === 0 ? ' --- ' : ' ---: ')).join('|')}|`;
  return [line(rows[0]), align, ...rows.slice(1).map(line)].join('\n');
}

function context(report: BenchReport): string[] {
  const skipped = Object.entries(report.skippedSystems).map(([s, why]) => `${SYSTEM_LABELS[s as SystemId]} skipped: ${why}`);
  return [
    `${report.mode} run, ${report.rounds} round(s), ${report.startedAt} .. ${report.finishedAt}`,
    `machine: ${report.machine.cpus} x ${report.machine.cpuModel}, ${report.machine.memoryGiB} GiB RAM, Linux ${report.machine.kernel}, Node ${report.machine.node}, load average ${report.machine.loadAverage.atStart.toFixed(2)} at start, ${report.machine.loadAverage.atEnd.toFixed(2)} at end`,
    `versions: ${Object.entries(report.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `app: ${report.appConfiguration}`,
    `manifest req/s measured with: ${report.loadTool}`,
    ...skipped,
    ...report.notes,
  ];
}

function rowNotes(report: BenchReport): string[] {
  return report.rows.filter((r) => r.note).map((r) => `${r.title}: ${r.note}`);
}

export function renderText(report: BenchReport): string {
  return [
    ...context(report),
    '',
    'Medians (ratios: median of per-round ratios, each against the baseline measured in the same round)',
    textTable(summaryRows(report)),
    ...rowNotes(report).map((n) => `  note: ${n}`),
    '',
    'Per-round values',
    textTable(perRoundRows(report)),
    '',
  ].join('\n');
}

export function renderMarkdown(report: BenchReport): string {
  return [
    ...context(report).map((l) => `- ${l}`),
    '',
    markdownTable(summaryRows(report)),
    '',
    ...rowNotes(report).map((n) => `- ${n}`),
    ...(rowNotes(report).length ? [''] : []),
    '<details><summary>Per-round values</summary>',
    '',
    markdownTable(perRoundRows(report)),
    '',
    '</details>',
    '',
  ].join('\n');
}
