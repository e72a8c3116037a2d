import type { Counter, LabelValues } from 'prom-client';

/** A counter child for a hot path: `inc` adds to a plain number. */
export interface Tally {
  inc(value?: number): void;
}

/**
 * The tallies of one counter. prom-client hashes the label set on every `inc()`, its own children's
 * too (a child is the counter with its labels bound): on a cached manifest pull, counting the request,
 * the cache hit, the memory-cache lookups and the bytes cost as much as the route itself. A tally
 * counts in a plain number; reading the counter (a scrape, a test) first adds every tally to it, so what
 * is read is complete.
 */
export class CounterTallies<L extends string> {
  private readonly tallies: { labels: LabelValues<L>; count: number }[] = [];

  /** The counter's `collect` option: prom-client calls it, with the counter as `this`, before each read. */
  get collect(): (this: Counter<L>) => void {
    const tallies = this.tallies;
    return function (this: Counter<L>) {
      for (const tally of tallies) {
        if (tally.count === 0) continue;
        const count = tally.count;
        tally.count = 0;
        this.inc(tally.labels, count);
      }
    };
  }

  /** A new tally for `labels` (one per call site that binds it: keep it, never make one per request). */
  tally(labels: LabelValues<L>): Tally {
    const tally = { labels, count: 0 };
    this.tallies.push(tally);
    return {
      inc: (value = 1) => {
        tally.count += value;
      },
    };
  }
}
