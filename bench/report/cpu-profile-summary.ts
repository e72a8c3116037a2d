/**
 * A text summary of the app's V8 CPU profile (`--profile`): busy vs idle time, the frames with the most
 * self time, and self time by package (the app's own code, each node_modules package, Node internals).
 * Open the .cpuprofile itself in Chrome DevTools or speedscope for the call tree.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const IDLE = new Set(['(idle)']);

function packageOf(url: string, functionName: string): string {
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency) return dependency[1];
  if (url.includes('/dist/src/')) return 'app (dist/src)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  return url || functionName || '(unknown)';
}

function frameName(node: CpuProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/dist\//, 'dist/');
  return `${functionName || '(anonymous)'}${where ? ` ${where}:${lineNumber + 1}` : ''}`;
}

export function summarizeCpuProfile(profile: CpuProfile, top = 25): string {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfTime = new Map<number, number>();
  profile.samples.forEach((id, i) => selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  let total = 0;
  let idle = 0;
  const byFrame = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const [id, micros] of selfTime) {
    const node = nodes.get(id)!;
    total += micros;
    if (IDLE.has(node.callFrame.functionName)) {
      idle += micros;
      continue;
    }
    const frame = frameName(node);
    byFrame.set(frame, (byFrame.get(frame) ?? 0) + micros);
    const pkg = packageOf(node.callFrame.url, node.callFrame.functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + micros);
  }
  const busy = total - idle;
  const lines = (entries: Map<string, number>) =>
    [...entries]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, micros]) => `${((100 * micros) / busy).toFixed(1).padStart(6)} %  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  return [
    `profiled ${(total / 1e6).toFixed(1)} s: busy ${(busy / 1e6).toFixed(1)} s, idle ${(idle / 1e6).toFixed(1)} s`,
    '',
    `self time by frame (top ${top}, % of busy)`,
    ...lines(byFrame),
    '',
    `self time by package (top ${top}, % of busy)`,
    ...lines(byPackage),
    '',
  ].join('\n');
}

/** Writes `<profile>.txt` next to every .cpuprofile in `dir`; returns the summaries' paths. */
export async function summarizeCpuProfiles(dir: string): Promise<string[]> {
  const written: string[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(await readFile(join(dir, name), 'utf8')) as CpuProfile;
    const path = join(dir, `${name}.txt`);
    await writeFile(path, summarizeCpuProfile(profile));
    written.push(path);
  }
  return written;
}
