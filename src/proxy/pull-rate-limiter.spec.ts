import { OciError, OciErrorCode } from '../oci/index.js';
import { PullRateLimiter } from './pull-rate-limiter.js';

const limiter = (perMinute: number) => new PullRateLimiter({ pullRateLimitPerMinute: perMinute } as never);

function refused(fn: () => void): OciError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err as OciError;
  }
}

describe('PullRateLimiter', () => {
  it('is off with a limit of 0', () => {
    const l = limiter(0);
    for (let i = 0; i < 1000; i++) l.check('10.0.0.1', 'tok');
  });

  it('refuses the request over the limit per IP with TOOMANYREQUESTS and a Retry-After, until the window ends', () => {
    const l = limiter(3);
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) l.check('10.0.0.1', undefined, t0 + i);
    const err = refused(() => l.check('10.0.0.1', undefined, t0 + 10_000));
    expect(err?.code).toBe(OciErrorCode.TOOMANYREQUESTS);
    expect(err?.status).toBe(429);
    expect((err?.detail as { retryAfter: number }).retryAfter).toBe(50);
    expect(refused(() => l.check('10.0.0.2', undefined, t0 + 10_000))).toBeUndefined(); // another IP
    expect(refused(() => l.check('10.0.0.1', undefined, t0 + 60_000))).toBeUndefined(); // next window
  });

  it('limits a credential across IPs', () => {
    const l = limiter(2);
    l.check('10.0.0.1', 'tok', 0);
    l.check('10.0.0.2', 'tok', 1);
    expect(refused(() => l.check('10.0.0.3', 'tok', 2))?.code).toBe(OciErrorCode.TOOMANYREQUESTS);
  });
});
