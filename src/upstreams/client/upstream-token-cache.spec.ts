import { tokenExpiresAt, UpstreamTokenCache } from './upstream-token-cache.js';

describe('tokenExpiresAt', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('defaults to 60 s minus skew when expires_in is absent or invalid', () => {
    expect(tokenExpiresAt({}, now)).toBe(now + 60_000 - 6_000);
    expect(tokenExpiresAt({ expires_in: 'soon' }, now)).toBe(now + 54_000);
    expect(tokenExpiresAt({ expires_in: -5 }, now)).toBe(now + 54_000);
  });

  it('caps the skew at 10 s for long-lived tokens', () => {
    expect(tokenExpiresAt({ expires_in: 3600 }, now)).toBe(now + 3_600_000 - 10_000);
  });

  it('counts from issued_at when it is plausible', () => {
    expect(tokenExpiresAt({ expires_in: 300, issued_at: '2025-12-31T23:59:00Z' }, now)).toBe(now - 60_000 + 300_000 - 10_000);
  });

  it('counts from receipt when issued_at is in the future, too old or unparsable', () => {
    expect(tokenExpiresAt({ expires_in: 300, issued_at: '2026-01-01T00:05:00Z' }, now)).toBe(now + 290_000);
    expect(tokenExpiresAt({ expires_in: 300, issued_at: '2025-01-01T00:00:00Z' }, now)).toBe(now + 290_000);
    expect(tokenExpiresAt({ expires_in: 300, issued_at: 'yesterday' }, now)).toBe(now + 290_000);
  });
});

describe('UpstreamTokenCache', () => {
  let clock: number;
  let cache: UpstreamTokenCache;
  let fetches: number;
  const fetchToken =
    (lifetimeMs = 1000) =>
    async () => {
      fetches++;
      await new Promise((r) => setTimeout(r, 5)); // deliberate: a token server's latency, so concurrent callers overlap
      return { value: `t${fetches}`, expiresAt: clock + lifetimeMs };
    };

  beforeEach(() => {
    clock = 1_000_000;
    fetches = 0;
    cache = new UpstreamTokenCache(() => clock, 3);
  });

  it('shares one fetch between concurrent callers and caches the result', async () => {
    const got = await Promise.all(Array.from({ length: 10 }, () => cache.obtain('k', fetchToken())));
    expect(new Set(got)).toEqual(new Set(['t1']));
    expect(await cache.obtain('k', fetchToken())).toBe('t1');
    expect(fetches).toBe(1);
  });

  it('fetches again after expiry', async () => {
    expect(await cache.obtain('k', fetchToken(1000))).toBe('t1');
    clock += 999;
    expect(cache.peek('k')).toBe('t1');
    clock += 1;
    expect(cache.peek('k')).toBeUndefined();
    expect(await cache.obtain('k', fetchToken())).toBe('t2');
  });

  it('replaces a rejected token once, even when many callers report it', async () => {
    await cache.obtain('k', fetchToken());
    const got = await Promise.all(Array.from({ length: 5 }, () => cache.obtain('k', fetchToken(), 't1')));
    expect(new Set(got)).toEqual(new Set(['t2']));
    // a late report of the old token does not drop the new one
    expect(await cache.obtain('k', fetchToken(), 't1')).toBe('t2');
    expect(fetches).toBe(2);
  });

  it('does not cache a failed fetch', async () => {
    await expect(cache.obtain('k', async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(await cache.obtain('k', fetchToken())).toBe('t1');
  });

  it('keeps at most maxEntries tokens and forgets by prefix', async () => {
    for (const k of ['1\na', '1\nb', '2\na', '2\nb']) await cache.obtain(k, fetchToken());
    expect(cache.size).toBe(3);
    expect(cache.peek('1\na')).toBeUndefined();
    cache.deleteByPrefix('2\n');
    expect(cache.size).toBe(1);
    expect(cache.peek('1\nb')).toBe('t2');
  });
});
