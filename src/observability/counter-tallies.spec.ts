import { MetricsService } from './metrics.service.js';

describe('MetricsService.tally (CounterTallies)', () => {
  it('adds what tallies counted to their counter whenever it is read, never twice', async () => {
    const metrics = new MetricsService();
    const hit = metrics.tally(metrics.cacheRequests, { result: 'hit', kind: 'manifest' });
    const sameLabels = metrics.tally(metrics.cacheRequests, { result: 'hit', kind: 'manifest' });
    const miss = metrics.tally(metrics.cacheRequests, { result: 'miss', kind: 'blob' });
    hit.inc();
    hit.inc();
    sameLabels.inc();
    miss.inc(5);
    metrics.cacheRequests.inc({ result: 'hit', kind: 'manifest' }); // the counter's own inc still works beside them

    const valueOf = async (labels: { result: string; kind: string }) =>
      (await metrics.cacheRequests.get()).values.find((v) => v.labels.result === labels.result && v.labels.kind === labels.kind)?.value;
    expect(await valueOf({ result: 'hit', kind: 'manifest' })).toBe(4);
    expect(await valueOf({ result: 'miss', kind: 'blob' })).toBe(5);
    expect(await valueOf({ result: 'hit', kind: 'manifest' })).toBe(4); // read again: nothing added twice

    hit.inc();
    const text = await metrics.registry.metrics(); // a scrape reads through the registry
    expect(text).toContain('registry_cache_requests_total{result="hit",kind="manifest"} 5');
    expect(text).toContain('registry_cache_requests_total{result="miss",kind="blob"} 5');
  });

  it('counts bytes and memory-cache lookups the same way', async () => {
    const metrics = new MetricsService();
    metrics.tally(metrics.bytesServed, { source: 'cache' }).inc(1024);
    const { hit, miss } = metrics.memoryCacheCounts('blob');
    hit.inc();
    miss.inc();
    miss.inc();
    const text = await metrics.registry.metrics();
    expect(text).toContain('registry_bytes_served_total{source="cache"} 1024');
    expect(text).toContain('registry_memory_cache_requests_total{cache="blob",result="hit"} 1');
    expect(text).toContain('registry_memory_cache_requests_total{cache="blob",result="miss"} 2');
  });

  it('refuses a counter made without tallies', () => {
    const metrics = new MetricsService();
    expect(() => metrics.tally(metrics.upstreamErrors, { kind: 'timeout' })).toThrow(/no tallies/);
  });
});
