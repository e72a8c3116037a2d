import { Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { UpstreamError } from './upstream-error.js';

/**
 * What one replica knows about the health and the budget of each upstream, consulted by UpstreamClient
 * before and after every registry request (SPEC section 3, "Upstream economy"):
 * - a circuit breaker: after `breakerFailures` consecutive connection failures, timeouts or 5xx answers
 *   the upstream is skipped (an `unreachable` UpstreamError at once, which the pull path treats like any
 *   outage: stale copy or next upstream) for a cool-down that doubles while probes fail; once it is over,
 *   one request at a time is let through as the probe, and its success closes the breaker;
 * - its rate-limit budget (Docker Hub's `ratelimit-limit`, `ratelimit-remaining`, `docker-ratelimit-source`),
 *   and a pause of GETs after a 429 with `Retry-After` (HEADs stay allowed: they are free on Docker Hub);
 * - a negative cache: a 404 for a manifest (tag or digest) is remembered for `negativeCacheMs`, and the
 *   next asks get the same answer without an upstream request; `forget()` and `forgetAnswers()` drop it.
 * State is per process: replicas do not share it.
 */
export interface UpstreamHealthOptions {
  breakerFailures: number;
  breakerCooldownMs: number;
  breakerMaxCooldownMs: number;
  negativeCacheMs: number;
  rateLimitReserve: number;
}

export type BreakerStateName = 'closed' | 'open' | 'half-open';

export interface BreakerSnapshot {
  state: BreakerStateName;
  consecutiveFailures: number;
  /** When an open breaker lets the next probe through. */
  openUntil?: Date;
  /** When it last opened. */
  openedAt?: Date;
  /** The cool-down used when it last opened. */
  cooldownMs: number;
}

export interface RateLimitSnapshot {
  limit?: number;
  remaining?: number;
  /** The window the upstream names (`;w=21600`), in seconds. */
  windowSeconds?: number;
  source?: string;
  /** When these values were last seen on an answer. */
  seenAt?: Date;
  /** GETs are not sent before this (429 with Retry-After). */
  pausedUntil?: Date;
}

export interface UpstreamHealthSnapshot {
  breaker: BreakerSnapshot;
  rateLimit: RateLimitSnapshot;
}

/** What admit() decided for one request; hand it back to answered(), failed() or released(). */
export interface Admission {
  upstreamId: string;
  probe: boolean;
  /** A remembered 404: answer it without asking. */
  remembered404: boolean;
}

/** Events for metrics; listeners must not throw. */
export interface UpstreamHealthListener {
  onBreaker?(upstreamId: string, snapshot: BreakerSnapshot, transition?: 'opened' | 'closed'): void;
  onRateLimit?(upstreamId: string, snapshot: RateLimitSnapshot): void;
  onSpared?(upstreamId: string): void;
  onNegativeHit?(upstreamId: string): void;
}

interface Breaker {
  state: BreakerStateName;
  failures: number;
  cooldownMs: number;
  openUntil: number;
  openedAt?: number;
  probing: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

const DEFAULT_OPTIONS: UpstreamHealthOptions = {
  breakerFailures: 3,
  breakerCooldownMs: 30_000,
  breakerMaxCooldownMs: 600_000,
  negativeCacheMs: 30_000,
  rateLimitReserve: 10,
};

/** A budget seen this long ago no longer says anything when the upstream named no window. */
const DEFAULT_BUDGET_WINDOW_MS = 6 * 3_600_000;

/** `100;w=21600` -> { value: 100, windowSeconds: 21600 } (RateLimit header fields draft, Docker Hub). */
export function parseRateLimitValue(raw: string | undefined): { value: number; windowSeconds?: number } | undefined {
  if (!raw) return undefined;
  const [first, ...params] = raw.split(';').map((p) => p.trim());
  if (!/^\d+$/.test(first)) return undefined;
  const result: { value: number; windowSeconds?: number } = { value: Number(first) };
  for (const param of params) {
    const m = /^w\s*=\s*(\d+)$/i.exec(param);
    if (m) result.windowSeconds = Number(m[1]);
  }
  return result;
}

/** `Retry-After`: delta-seconds or an HTTP date; the moment it names, or undefined when unreadable. */
export function parseRetryAfter(raw: string | undefined, now = Date.now()): number | undefined {
  if (!raw) return undefined;
  const value = raw.trim();
  if (/^\d+$/.test(value)) return now + Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : date;
}

function first(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class UpstreamHealth {
  private readonly logger = new Logger(UpstreamHealth.name);
  private readonly options: UpstreamHealthOptions;
  private readonly breakers = new Map<string, Breaker>();
  private readonly budgets = new Map<string, RateLimitSnapshot>();
  /** Remembered 404s: key -> when the memory ends. */
  private readonly notFound: LRUCache<string, number> | undefined;
  private readonly listeners: UpstreamHealthListener[] = [];

  constructor(
    options: Partial<UpstreamHealthOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.options = { ...DEFAULT_OPTIONS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
    this.notFound = this.options.negativeCacheMs > 0 ? new LRUCache<string, number>({ max: 10_000 }) : undefined;
  }

  addListener(listener: UpstreamHealthListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  // ---------------------------------------------------------------- around a request

  /**
   * Before a registry request: throws a fast UpstreamError when the breaker is open (or another probe is
   * running) or when GETs are paused after a 429; says when a 404 for this path is remembered.
   */
  admit(upstreamId: number | string, method: 'GET' | 'HEAD', path: string): Admission {
    const id = String(upstreamId);
    if (this.remembersNotFound(id, path)) {
      this.emit((l) => l.onNegativeHit?.(id));
      return { upstreamId: id, probe: false, remembered404: true };
    }
    const now = this.now();
    const budget = this.budgets.get(id);
    if (method === 'GET' && budget?.pausedUntil && budget.pausedUntil.getTime() > now) {
      throw new UpstreamError('status', 'upstream rate limit reached: requests paused as it asked (Retry-After)', upstreamId, 429, {
        detail: `GET ${path} not sent before ${budget.pausedUntil.toISOString()}`,
      });
    }
    const breaker = this.breakers.get(id);
    if (!breaker || breaker.state === 'closed') return { upstreamId: id, probe: false, remembered404: false };
    if (breaker.state === 'open' && breaker.openUntil <= now && !breaker.probing) {
      breaker.state = 'half-open';
      breaker.probing = true;
      this.emit((l) => l.onBreaker?.(id, this.breakerSnapshot(breaker)));
      return { upstreamId: id, probe: true, remembered404: false };
    }
    throw new UpstreamError('unreachable', 'upstream skipped: it keeps failing (circuit breaker open)', upstreamId, undefined, {
      detail: `${method} ${path} not sent; next probe after ${new Date(breaker.openUntil).toISOString()}`,
    });
  }

  /** The upstream answered (any status): budget headers, 404s, and 5xx as a breaker failure. */
  answered(admission: Admission, method: 'GET' | 'HEAD', path: string, status: number, headers: Headers): void {
    const id = admission.upstreamId;
    this.readBudget(id, status, headers);
    if (status === 404 && this.notFound && isManifestPath(path)) {
      this.notFound.set(negativeKey(id, path), this.now() + this.options.negativeCacheMs);
    }
    if (status >= 500) this.failure(admission, `${method} answered ${status}`);
    else this.success(admission);
  }

  /** The request failed without an answer (already classified). */
  failed(admission: Admission, error: UpstreamError): void {
    const counts = error.kind === 'unreachable' || error.kind === 'timeout' || (error.kind === 'status' && (error.status ?? 0) >= 500);
    if (counts) this.failure(admission, error.message);
    else this.released(admission);
  }

  /** The request ended without telling anything about the upstream (the caller gave up). */
  released(admission: Admission): void {
    if (!admission.probe) return;
    const breaker = this.breakers.get(admission.upstreamId);
    if (!breaker || breaker.state !== 'half-open') return;
    breaker.probing = false;
    breaker.state = 'open'; // openUntil is past: the next request probes
  }

  // ---------------------------------------------------------------- budget

  /**
   * True when the upstream's last known rate-limit budget is under the reserve: a cached tag should be
   * served stale rather than spend a manifest GET. Logs and counts each time it says so.
   */
  spareManifestGet(upstreamId: number | string, what: string): boolean {
    const id = String(upstreamId);
    const budget = this.budgets.get(id);
    if (!budget || budget.remaining === undefined || !budget.seenAt) return false;
    const windowMs = budget.windowSeconds !== undefined ? budget.windowSeconds * 1000 : DEFAULT_BUDGET_WINDOW_MS;
    if (budget.seenAt.getTime() + windowMs <= this.now()) return false;
    if (budget.remaining >= this.options.rateLimitReserve) return false;
    this.logger.warn(
      `upstream ${id}: ${budget.remaining} manifest GETs left (reserve ${this.options.rateLimitReserve}); serving the cached ${what} stale instead of fetching it`,
    );
    this.emit((l) => l.onSpared?.(id));
    return true;
  }

  // ---------------------------------------------------------------- state

  snapshot(upstreamId: number | string): UpstreamHealthSnapshot {
    const id = String(upstreamId);
    const breaker = this.breakers.get(id);
    return {
      breaker: breaker ? this.breakerSnapshot(breaker) : { state: 'closed', consecutiveFailures: 0, cooldownMs: this.options.breakerCooldownMs },
      rateLimit: { ...(this.budgets.get(id) ?? {}) },
    };
  }

  /** Forget everything about one upstream (it was changed or deleted). */
  forget(upstreamId: number | string): void {
    const id = String(upstreamId);
    this.breakers.delete(id);
    this.budgets.delete(id);
    this.forgetAnswers(id);
  }

  /** Forget remembered 404s: of one upstream, or of all (an admin change to registries or upstreams). */
  forgetAnswers(upstreamId?: number | string): void {
    if (!this.notFound) return;
    if (upstreamId === undefined) {
      this.notFound.clear();
      return;
    }
    const prefix = `${upstreamId}\n`;
    for (const key of [...this.notFound.keys()]) if (key.startsWith(prefix)) this.notFound.delete(key);
  }

  private remembersNotFound(id: string, path: string): boolean {
    if (!this.notFound) return false;
    const key = negativeKey(id, path);
    const until = this.notFound.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.notFound.delete(key);
    return false;
  }

  private readBudget(id: string, status: number, headers: Headers): void {
    const limit = parseRateLimitValue(first(headers, 'ratelimit-limit'));
    const remaining = parseRateLimitValue(first(headers, 'ratelimit-remaining'));
    const source = first(headers, 'docker-ratelimit-source');
    const retryAt = status === 429 ? parseRetryAfter(first(headers, 'retry-after'), this.now()) : undefined;
    if (!limit && !remaining && !source && retryAt === undefined) return;
    const budget = this.budgets.get(id) ?? {};
    if (limit || remaining || source) {
      if (limit) budget.limit = limit.value;
      if (remaining) budget.remaining = remaining.value;
      const windowSeconds = remaining?.windowSeconds ?? limit?.windowSeconds;
      if (windowSeconds !== undefined) budget.windowSeconds = windowSeconds;
      if (source) budget.source = source;
      budget.seenAt = new Date(this.now());
    }
    if (retryAt !== undefined && retryAt > this.now()) {
      budget.pausedUntil = new Date(retryAt);
      this.logger.warn(`upstream ${id} answered 429: no GET is sent to it before ${budget.pausedUntil.toISOString()}`);
    }
    this.budgets.set(id, budget);
    this.emit((l) => l.onRateLimit?.(id, { ...budget }));
  }

  private success(admission: Admission): void {
    const breaker = this.breakers.get(admission.upstreamId);
    if (!breaker) return;
    if (breaker.state === 'closed') {
      breaker.failures = 0;
      return;
    }
    if (!admission.probe) return; // an answer to a request sent before it opened says little
    this.breakers.delete(admission.upstreamId);
    this.logger.log(`upstream ${admission.upstreamId} answered the probe: circuit breaker closed`);
    this.emit((l) => l.onBreaker?.(admission.upstreamId, this.snapshot(admission.upstreamId).breaker, 'closed'));
  }

  private failure(admission: Admission, reason: string): void {
    const id = admission.upstreamId;
    let breaker = this.breakers.get(id);
    if (!breaker) {
      breaker = { state: 'closed', failures: 0, cooldownMs: this.options.breakerCooldownMs, openUntil: 0, probing: false };
      this.breakers.set(id, breaker);
    }
    breaker.failures++;
    if (breaker.state === 'closed') {
      if (breaker.failures < this.options.breakerFailures) return;
      breaker.cooldownMs = this.options.breakerCooldownMs;
    } else if (admission.probe) {
      breaker.cooldownMs = Math.min(breaker.cooldownMs * 2, this.options.breakerMaxCooldownMs);
    } else {
      return; // already open: a late failure of a request sent before does not extend it
    }
    const now = this.now();
    breaker.state = 'open';
    breaker.probing = false;
    breaker.openedAt = now;
    breaker.openUntil = now + breaker.cooldownMs;
    this.logger.warn(`upstream ${id}: ${breaker.failures} failures in a row (last: ${reason}); circuit breaker open for ${breaker.cooldownMs} ms`);
    this.emit((l) => l.onBreaker?.(id, this.breakerSnapshot(breaker), 'opened'));
  }

  private breakerSnapshot(breaker: Breaker): BreakerSnapshot {
    return {
      state: breaker.state,
      consecutiveFailures: breaker.failures,
      openUntil: breaker.state === 'closed' ? undefined : new Date(breaker.openUntil),
      openedAt: breaker.openedAt !== undefined ? new Date(breaker.openedAt) : undefined,
      cooldownMs: breaker.cooldownMs,
    };
  }

  private emit(call: (listener: UpstreamHealthListener) => void): void {
    for (const listener of this.listeners) {
      try {
        call(listener);
      } catch (err) {
        this.logger.warn(`upstream health listener failed: ${(err as Error).message}`);
      }
    }
  }
}

function negativeKey(id: string, path: string): string {
  return `${id}\n${path}`;
}

/** `/<name>/manifests/<tag or digest>`: the answers the negative cache remembers. */
function isManifestPath(path: string): boolean {
  return /\/manifests\/[^/]+$/.test(path);
}
