/**
 * A real client pull: `skopeo copy docker://<system>/<name>:<ref> dir:<fresh dir>`, timed from spawn to
 * exit. skopeo verifies every blob against its digest, so a timed pull is also a correct pull.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { referenceOf, type PullSystem } from '../systems/pull-system.js';

const run = promisify(execFile);

export interface SkopeoPullOptions {
  /** `--all`: every image of a multi-arch index. */
  all?: boolean;
  timeoutMs?: number;
  /** Aborting kills the skopeo process (the benchmark is stopping). */
  signal?: AbortSignal;
}

/** Pulls one image into a fresh directory under `workDir` (deleted afterwards); returns seconds. */
export async function skopeoPull(system: PullSystem, name: string, reference: string, workDir: string, options: SkopeoPullOptions = {}): Promise<number> {
  const dest = await mkdtemp(join(workDir, 'pull-'));
  const args = [
    'copy',
    '--src-tls-verify=false',
    ...system.skopeoCredentials(),
    ...(options.all ? ['--all'] : []),
    `docker://${referenceOf(system, name, reference)}`,
    `dir:${dest}`,
  ];
  const started = performance.now();
  try {
    await run('skopeo', args, { timeout: options.timeoutMs ?? 600_000, maxBuffer: 4 * 1024 * 1024, signal: options.signal });
    return (performance.now() - started) / 1000;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo pull from ${system.id} failed: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' | ')}`, { cause: err });
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}
