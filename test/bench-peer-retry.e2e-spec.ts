/**
 * The benchmark's treatment of a reference peer that fails a measurement (bench/scenarios/
 * concurrent-pulls.scenario.ts): retried once on a fresh cache and said in the row's note; the app's
 * and the direct pull's failures stop the run.
 */
import { RowBook } from '../bench/bench-context.js';
import { retryingPeerOnce } from '../bench/scenarios/concurrent-pulls.scenario.js';
import type { SystemId } from '../bench/systems/pull-system.js';

function setup(id: SystemId) {
  const rows = new RowBook();
  rows.declare('concurrent-wall', '8 concurrent cold pulls, wall time', 's');
  const progress: string[] = [];
  const system = { id, freshCaches: 0, freshCache: async () => void system.freshCaches++ };
  const ctx = { rows, progress: (m: string) => void progress.push(m), signal: new AbortController().signal };
  return { rows, progress, system, ctx };
}

/** An attempt that fails `failures` times (Distribution's 500), then measures 7.5 s. */
function attempts(failures: number) {
  let calls = 0;
  const attempt = async () => {
    calls++;
    if (calls <= failures) throw new Error('skopeo pull from distribution failed: invalid status code from registry 500\nmore');
    return 7.5;
  };
  return { attempt, calls: () => calls };
}

describe('benchmark: a reference peer that fails a measurement', () => {
  it('is measured again once on a fresh cache, and the row says so', async () => {
    const { rows, progress, system, ctx } = setup('distribution');
    const { attempt, calls } = attempts(1);
    await expect(retryingPeerOnce(ctx, system, 'concurrent-wall', 'round 2 8 concurrent cold pulls', attempt)).resolves.toBe(7.5);
    expect([calls(), system.freshCaches]).toEqual([2, 1]);
    expect(rows.get('concurrent-wall').note).toBe(
      'round 2 8 concurrent cold pulls: distribution failed once and was measured again on a fresh cache (skopeo pull from distribution failed: invalid status code from registry 500)',
    );
    expect(progress).toHaveLength(1);
  });

  it('stops the run when the peer fails again', async () => {
    const { system, ctx } = setup('nginx');
    const { attempt, calls } = attempts(2);
    await expect(retryingPeerOnce(ctx, system, 'concurrent-wall', 'round 1', attempt)).rejects.toThrow('500');
    expect(calls()).toBe(2);
  });

  it.each<SystemId>(['app', 'direct'])('never retries %s: its failure stops the run at once', async (id) => {
    const { rows, system, ctx } = setup(id);
    const { attempt, calls } = attempts(1);
    await expect(retryingPeerOnce(ctx, system, 'concurrent-wall', 'round 1', attempt)).rejects.toThrow('500');
    expect([calls(), system.freshCaches, rows.get('concurrent-wall').note]).toEqual([1, 0, undefined]);
  });
});
