import { InvalidatedLru } from './invalidated-lru.js';
import { LocalInvalidationBus } from './invalidation-bus.js';

function counting() {
  const counts = { hits: 0, misses: 0 };
  return { counts, lookups: { hit: { inc: () => counts.hits++ }, miss: { inc: () => counts.misses++ } } };
}

describe('InvalidatedLru', () => {
  it('counts each lookup as a hit or a miss', () => {
    const { counts, lookups } = counting();
    const lru = new InvalidatedLru<{ v: number }>(new LocalInvalidationBus(), { ttlMs: 60_000, counts: lookups });
    lru.set('a', { v: 1 }, lru.generation);
    expect(lru.get('a')).toEqual({ v: 1 });
    expect(lru.get('b')).toBeUndefined();
    expect(counts).toEqual({ hits: 1, misses: 1 });
  });

  it('leaves an uncounted lookup to countHit(), once it is used', () => {
    const { counts, lookups } = counting();
    const lru = new InvalidatedLru<{ v: number }>(new LocalInvalidationBus(), { ttlMs: 60_000, counts: lookups });
    lru.set('a', { v: 1 }, lru.generation);
    expect(lru.get('a', false)).toEqual({ v: 1 });
    expect(lru.get('b', false)).toBeUndefined();
    expect(counts).toEqual({ hits: 0, misses: 0 });
    lru.countHit();
    expect(counts).toEqual({ hits: 1, misses: 0 });
  });

  it('forgets everything on a change, and keeps nothing read before it', () => {
    const bus = new LocalInvalidationBus();
    const lru = new InvalidatedLru<{ v: number }>(bus, { ttlMs: 60_000 });
    lru.set('a', { v: 1 }, lru.generation);
    const before = lru.generation;
    bus.changed('test');
    expect(lru.get('a', false)).toBeUndefined();
    lru.set('b', { v: 2 }, before);
    expect(lru.get('b')).toBeUndefined();
  });
});
