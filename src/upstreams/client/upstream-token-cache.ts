/** A bearer token from an upstream's token server, with the instant it stops being used. */
export interface UpstreamToken {
  value: string;
  /** Epoch milliseconds after which the token is not sent any more. */
  expiresAt: number;
}

/** Docker token spec: a response without `expires_in` is valid for 60 seconds. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 60;

/**
 * When a token stops being used: `issued_at` (or, when absent, implausible or in the future, the time it
 * was received) plus `expires_in` (default 60 s), minus a skew of 10% of the lifetime capped at 10 s so
 * a token is never sent in its last moments.
 */
export function tokenExpiresAt(response: { expires_in?: unknown; issued_at?: unknown }, receivedAt: number): number {
  const lifetime =
    typeof response.expires_in === 'number' && Number.isFinite(response.expires_in) && response.expires_in > 0
      ? response.expires_in
      : DEFAULT_TOKEN_LIFETIME_SECONDS;
  let issuedAt = receivedAt;
  if (typeof response.issued_at === 'string') {
    const parsed = Date.parse(response.issued_at);
    // a clock ahead of ours, or a token older than its own lifetime, says more about clocks than tokens
    if (Number.isFinite(parsed) && parsed <= receivedAt && receivedAt - parsed < lifetime * 1000) issuedAt = parsed;
  }
  const skew = Math.min(10_000, lifetime * 100);
  return issuedAt + lifetime * 1000 - skew;
}

/**
 * Bearer tokens per key (upstream + scope) until they expire, with one shared fetch per key: concurrent
 * callers that need the same token wait for the same token-server request.
 */
export class UpstreamTokenCache {
  private readonly tokens = new Map<string, UpstreamToken>();
  private readonly inflight = new Map<string, Promise<UpstreamToken>>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxEntries = 10_000,
  ) {}

  /** A cached token that has not expired. */
  peek(key: string): string | undefined {
    const token = this.tokens.get(key);
    if (!token) return undefined;
    if (token.expiresAt <= this.now()) {
      this.tokens.delete(key);
      return undefined;
    }
    return token.value;
  }

  /**
   * A valid token for the key: a fetch already under way, else the cached token (unless it is
   * `rejected`, the one the upstream just refused), else a new fetch shared with concurrent callers.
   */
  async obtain(key: string, fetchToken: () => Promise<UpstreamToken>, rejected?: string): Promise<string> {
    const running = this.inflight.get(key);
    if (running) return (await running).value;
    if (rejected !== undefined) this.invalidate(key, rejected);
    const cached = this.peek(key);
    if (cached !== undefined) return cached;
    const fetching = (async () => {
      try {
        const token = await fetchToken();
        this.store(key, token);
        return token;
      } finally {
        this.inflight.delete(key);
      }
    })();
    this.inflight.set(key, fetching);
    return (await fetching).value;
  }

  /** Drop the key's token if it is still `value` (a newer one fetched meanwhile stays). */
  invalidate(key: string, value: string): void {
    if (this.tokens.get(key)?.value === value) this.tokens.delete(key);
  }

  /** Drop every token whose key starts with the prefix (an upstream deleted or changed). */
  deleteByPrefix(prefix: string): void {
    for (const key of this.tokens.keys()) if (key.startsWith(prefix)) this.tokens.delete(key);
  }

  get size(): number {
    return this.tokens.size;
  }

  private store(key: string, token: UpstreamToken): void {
    this.tokens.delete(key);
    this.tokens.set(key, token);
    if (this.tokens.size <= this.maxEntries) return;
    const now = this.now();
    for (const [k, t] of this.tokens) if (t.expiresAt <= now) this.tokens.delete(k);
    // still full: forget the least recently stored
    for (const k of this.tokens.keys()) {
      if (this.tokens.size <= this.maxEntries) break;
      this.tokens.delete(k);
    }
  }
}
