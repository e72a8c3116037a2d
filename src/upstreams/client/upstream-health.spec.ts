import { UpstreamError } from './upstream-error.js';
import { UpstreamHealth, parseRateLimitValue, parseRetryAfter } from './upstream-health.js';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

const timeout = (id: number) => new UpstreamError('timeout', 'upstream timed out', id);

describe('UpstreamHealth', () => {
  it('parses Docker Hub rate-limit values and Retry-After', () => {
    expect(parseRateLimitValue('100;w=21600')).toEqual({ value: 100, windowSeconds: 21600 });
    expect(parseRateLimitValue('76')).toEqual({ value: 76 });
    expect(parseRateLimitValue('lots')).toBeUndefined();
    expect(parseRetryAfter('30', 1000)).toBe(31_000);
    expect(parseRetryAfter('Wed, 21 Oct 2026 07:28:00 GMT')).toBe(Date.parse('Wed, 21 Oct 2026 07:28:00 GMT'));
    expect(parseRetryAfter('soon')).toBeUndefined();
  });

  it('opens after N consecutive failures, fails fast, lets one probe through after the cool-down, and doubles it when the probe fails', () => {
    const c = clock();
    const health = new UpstreamHealth({ breakerFailures: 3, breakerCooldownMs: 1000, breakerMaxCooldownMs: 3000 }, c.now);
    for (let i = 0; i < 2; i++) health.failed(health.admit(1, 'GET', '/a/manifests/x'), timeout(1));
    expect(health.snapshot(1).breaker.state).toBe('closed');
    health.answered(health.admit(1, 'GET', '/a/manifests/x'), 'GET', '/a/manifests/x', 503, {});
    expect(health.snapshot(1).breaker).toMatchObject({ state: 'open', consecutiveFailures: 3, cooldownMs: 1000 });
    expect(() => health.admit(1, 'HEAD', '/a/manifests/x')).toThrow(expect.objectContaining({ kind: 'unreachable', isOutage: true }));
    expect(() => health.admit(2, 'GET', '/a/manifests/x')).not.toThrow(); // other upstreams are not affected

    c.t += 1000;
    const probe = health.admit(1, 'GET', '/a/manifests/x');
    expect(probe.probe).toBe(true);
    expect(() => health.admit(1, 'GET', '/a/manifests/x')).toThrow(UpstreamError); // one probe at a time
    health.failed(probe, timeout(1));
    expect(health.snapshot(1).breaker).toMatchObject({ state: 'open', cooldownMs: 2000 });
    c.t += 1999;
    expect(() => health.admit(1, 'GET', '/a/manifests/x')).toThrow(UpstreamError);
    c.t += 1;
    health.failed(health.admit(1, 'GET', '/a/manifests/x'), timeout(1));
    expect(health.snapshot(1).breaker.cooldownMs).toBe(3000); // capped

    c.t += 3000;
    const recovered = health.admit(1, 'GET', '/a/manifests/x');
    health.answered(recovered, 'GET', '/a/manifests/x', 200, {});
    expect(health.snapshot(1).breaker).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
  });

  it('does not count answers that are not outages, and a success resets the count', () => {
    const health = new UpstreamHealth({ breakerFailures: 2 });
    health.failed(health.admit(1, 'GET', '/a/blobs/x'), timeout(1));
    health.answered(health.admit(1, 'GET', '/a/blobs/x'), 'GET', '/a/blobs/x', 404, {});
    health.failed(health.admit(1, 'GET', '/a/blobs/x'), timeout(1));
    health.failed(health.admit(1, 'GET', '/a/blobs/x'), new UpstreamError('credentials', 'no', 1));
    expect(health.snapshot(1).breaker.state).toBe('closed');
  });

  it('an abandoned probe lets the next request probe', () => {
    const c = clock();
    const health = new UpstreamHealth({ breakerFailures: 1, breakerCooldownMs: 10 }, c.now);
    health.failed(health.admit(1, 'GET', '/p'), timeout(1));
    c.t += 10;
    health.released(health.admit(1, 'GET', '/p'));
    expect(health.admit(1, 'GET', '/p').probe).toBe(true);
  });

  it('remembers rate-limit headers, spares manifest GETs under the reserve, and pauses GETs (not HEADs) after a 429 with Retry-After', () => {
    const c = clock();
    const health = new UpstreamHealth({ rateLimitReserve: 10 }, c.now);
    const headers = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '12;w=21600', 'docker-ratelimit-source': '203.0.113.7' };
    health.answered(health.admit(1, 'GET', '/a/manifests/x'), 'GET', '/a/manifests/x', 200, headers);
    expect(health.snapshot(1).rateLimit).toEqual({ limit: 100, remaining: 12, windowSeconds: 21600, source: '203.0.113.7', seenAt: new Date(c.t) });
    expect(health.spareManifestGet(1, 'tag')).toBe(false);
    health.answered(health.admit(1, 'HEAD', '/a/manifests/x'), 'HEAD', '/a/manifests/x', 200, { 'ratelimit-remaining': '9;w=21600' });
    expect(health.spareManifestGet(1, 'tag')).toBe(true);
    expect(health.spareManifestGet(2, 'tag')).toBe(false);
    c.t += 21_600_000; // the window has passed: the old budget says nothing
    expect(health.spareManifestGet(1, 'tag')).toBe(false);

    health.answered(health.admit(1, 'GET', '/a/manifests/x'), 'GET', '/a/manifests/x', 429, { 'retry-after': '30' });
    expect(health.snapshot(1).rateLimit.pausedUntil).toEqual(new Date(c.t + 30_000));
    expect(() => health.admit(1, 'GET', '/a/manifests/x')).toThrow(expect.objectContaining({ kind: 'status', status: 429, isOutage: true }));
    expect(() => health.admit(1, 'HEAD', '/a/manifests/x')).not.toThrow();
    expect(health.snapshot(1).breaker.state).toBe('closed'); // a 429 is not a failure of the upstream
    c.t += 30_000;
    expect(() => health.admit(1, 'GET', '/a/manifests/x')).not.toThrow();
  });

  it('remembers a 404 for a manifest for the configured time, per upstream, until forgotten', () => {
    const c = clock();
    const health = new UpstreamHealth({ negativeCacheMs: 1000 }, c.now);
    health.answered(health.admit(1, 'HEAD', '/a/manifests/missing'), 'HEAD', '/a/manifests/missing', 404, {});
    health.answered(health.admit(1, 'GET', '/a/blobs/sha256:00'), 'GET', '/a/blobs/sha256:00', 404, {});
    expect(health.admit(1, 'GET', '/a/manifests/missing').remembered404).toBe(true);
    expect(health.admit(2, 'GET', '/a/manifests/missing').remembered404).toBe(false);
    expect(health.admit(1, 'GET', '/a/blobs/sha256:00').remembered404).toBe(false);
    c.t += 1001;
    expect(health.admit(1, 'GET', '/a/manifests/missing').remembered404).toBe(false);

    health.answered(health.admit(1, 'GET', '/a/manifests/missing'), 'GET', '/a/manifests/missing', 404, {});
    health.forgetAnswers();
    expect(health.admit(1, 'GET', '/a/manifests/missing').remembered404).toBe(false);
    health.answered(health.admit(1, 'GET', '/a/manifests/missing'), 'GET', '/a/manifests/missing', 404, {});
    health.forget(1);
    expect(health.admit(1, 'GET', '/a/manifests/missing').remembered404).toBe(false);
  });

  it('remembers nothing with UPSTREAM_NEGATIVE_CACHE_MS=0', () => {
    const health = new UpstreamHealth({ negativeCacheMs: 0 });
    health.answered(health.admit(1, 'GET', '/a/manifests/missing'), 'GET', '/a/manifests/missing', 404, {});
    expect(health.admit(1, 'GET', '/a/manifests/missing').remembered404).toBe(false);
  });
});
