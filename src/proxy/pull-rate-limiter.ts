import { Inject, Injectable } from '@nestjs/common';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { OciError, OciErrorCode } from '../oci/index.js';

const WINDOW_MS = 60_000;
/** Keys tracked at most; the oldest windows are dropped first (bounded memory under a flood of IPs). */
const MAX_KEYS = 100_000;

/**
 * PULL_RATE_LIMIT_PER_MINUTE requests per client IP and per credential, in fixed one-minute windows,
 * counted in this process (each replica limits on its own). 0 turns it off (the default).
 */
@Injectable()
export class PullRateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(@Inject(limitsConfig.KEY) private readonly limits: LimitsConfig) {}

  /** Whether requests are counted at all (PULL_RATE_LIMIT_PER_MINUTE > 0). */
  get enabled(): boolean {
    return this.limits.pullRateLimitPerMinute > 0;
  }

  /** Throws TOOMANYREQUESTS (429, with a Retry-After) when either key is over its limit. */
  check(ip: string, credential: string | undefined, now = Date.now()): void {
    const limit = this.limits.pullRateLimitPerMinute;
    if (limit <= 0) return;
    for (const key of credential ? [`ip:${ip}`, `cred:${credential}`] : [`ip:${ip}`]) {
      let window = this.windows.get(key);
      if (!window || now - window.start >= WINDOW_MS) {
        this.windows.delete(key);
        window = { start: now, count: 0 };
        this.windows.set(key, window);
        if (this.windows.size > MAX_KEYS) this.windows.delete(this.windows.keys().next().value!);
      }
      window.count += 1;
      if (window.count > limit) {
        const retryAfter = Math.ceil((window.start + WINDOW_MS - now) / 1000);
        throw new OciError(OciErrorCode.TOOMANYREQUESTS, 'too many requests, retry later', { detail: { retryAfter } });
      }
    }
  }
}
