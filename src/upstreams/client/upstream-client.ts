import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, OnApplicationShutdown, Optional } from '@nestjs/common';
import { Agent, type Dispatcher } from 'undici';
import { upstreamConfig } from '../../config/config.js';
import type { UpstreamConfig } from '../../config/config.js';
import { UpstreamAddressPolicy } from './upstream-address-policy.js';
import { findBearerChallenge, offersBasic, parseWwwAuthenticate, type BearerChallenge } from './upstream-challenge.js';
import { requestUpstream, UpstreamBody } from './upstream-body.js';
import { classifyUpstreamError, UpstreamError, type UpstreamErrorKind } from './upstream-error.js';
import { UpstreamHealth, type Admission } from './upstream-health.js';
import { tokenExpiresAt, UpstreamTokenCache, type UpstreamToken } from './upstream-token-cache.js';
import { normalizeUpstreamUrl, repositoryNameOfPath } from './upstream-url.js';

/** What the client needs to know about an upstream; it knows nothing about storage or the database. */
export interface UpstreamDescriptor {
  id: number | string;
  /** The registry base URL (normalised or not; `/v2` is added by the client). */
  url: string;
  username?: string | null;
  password?: string | null;
  /** The remembered token endpoint (`auth_url`) reported earlier by onRealmDiscovered, if persisted. */
  authUrl?: string | null;
  /** The stored credentials could not be decrypted: nothing is sent, every request fails (`credentials`). */
  credentialsUnreadable?: boolean;
}

export interface UpstreamRequestOptions {
  /** Accept header value(s), e.g. the manifest media types the client accepts. */
  accept?: string | readonly string[];
  /** A Range header value (`bytes=0-1023`), forwarded as is (also across redirects). */
  range?: string;
  signal?: AbortSignal;
}

export type UpstreamResponseBody = UpstreamBody;
export type UpstreamResponseHeaders = Record<string, string | string[] | undefined>;

/**
 * An upstream answer after authentication and redirects. `body` is the live response stream: the
 * caller must consume or destroy it (a HEAD body is already drained). Any status is returned as is
 * (404 means "try the next upstream"); errors are thrown only when there is no answer.
 * A body stream that fails later emits the raw transport error: classifyUpstreamError() translates it.
 */
export interface UpstreamResponse {
  status: number;
  headers: UpstreamResponseHeaders;
  body: UpstreamResponseBody;
  /** The URL that answered (after redirects). */
  url: string;
  /** The token endpoint this upstream uses, once known (realm with its `service`). */
  authUrl?: string;
}

export interface UpstreamRequestEvent {
  upstreamId: number | string;
  method: string;
  /** `registry` for registry requests (one event per call, final status); `token` for token-server requests. */
  target: 'registry' | 'token';
  status?: number;
  errorKind?: UpstreamErrorKind;
  /** Time until the response headers (including authentication and redirects). */
  durationMs: number;
}

/** Hooks for metrics and persistence; every method is optional and must not throw. */
export interface UpstreamClientObserver {
  onRequest?(event: UpstreamRequestEvent): void;
  /**
   * A token endpoint was learnt from a challenge and differs from the descriptor's `authUrl`: persist it
   * as the upstream's `auth_url` so tokens are fetched before the first request after a restart.
   * `authUrl` is the challenge's realm with its `service` folded in as a query parameter; `upstreamUrl`
   * is the (normalised) upstream URL whose challenge named it: the realm belongs to that URL only.
   */
  onRealmDiscovered?(upstreamId: number | string, authUrl: string, upstreamUrl: string): void;
}

export const MAX_UPSTREAM_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const USER_AGENT = 'container-virtual-registry (+undici)';
const RETRYABLE_SOCKET_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET']);
/** How long close() lets open upstream bodies finish before it destroys them. */
const BODY_CLOSE_GRACE_MS = 5000;

type Authorization = { scheme: 'bearer'; token: string; key: string } | { scheme: 'basic' };

interface UpstreamState {
  fingerprint: string;
  /** Token endpoint: realm + service. */
  authUrl?: string;
  /** The upstream asked for HTTP Basic: send credentials up front. */
  basic: boolean;
}

interface Exchange {
  status: number;
  headers: UpstreamResponseHeaders;
  body: UpstreamResponseBody;
  url: string;
}

function basicHeader(upstream: UpstreamDescriptor): string | undefined {
  if (!upstream.username && !upstream.password) return undefined;
  return `Basic ${Buffer.from(`${upstream.username ?? ''}:${upstream.password ?? ''}`, 'utf8').toString('base64')}`;
}

function isHttpUrl(value: string | null | undefined): value is string {
  if (!value) return false;
  try {
    const u = new URL(value);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** The token endpoint of a challenge: the realm, with `service` added unless the realm already has one. */
export function tokenEndpointOf(challenge: BearerChallenge): string {
  const url = new URL(challenge.realm);
  if (challenge.service && !url.searchParams.has('service')) url.searchParams.set('service', challenge.service);
  return url.href;
}

async function drain(body: UpstreamResponseBody): Promise<void> {
  try {
    await body.dump({ limit: 64 * 1024 });
  } catch {
    body.destroy();
  }
}

async function readText(body: UpstreamResponseBody, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new Error(`response larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The answer to a request whose 404 is remembered (UpstreamHealth): an empty 404, nothing was sent. */
function rememberedNotFound(url: string): UpstreamResponse {
  const body = UpstreamBody.empty();
  return { status: 404, headers: { 'content-length': '0' }, body, url };
}

/**
 * HTTP client for upstream registries (SPEC section 3, "Upstream client"): pooled keep-alive
 * connections per origin, streamed bodies, the docker bearer-token flow (anonymous or with the
 * upstream's credentials) with one shared token fetch per (upstream, scope), HTTP Basic, redirects to
 * blob CDNs without leaking credentials, timeouts, and the SSRF address policy on every connection.
 */
@Injectable()
export class UpstreamClient implements OnApplicationShutdown {
  private readonly logger = new Logger(UpstreamClient.name);
  readonly addressPolicy: UpstreamAddressPolicy;
  private readonly agent: Agent;
  private readonly tokens = new UpstreamTokenCache();
  private readonly states = new Map<string, UpstreamState>();
  private readonly observers: UpstreamClientObserver[] = [];
  /** Bodies of answers handed out and not closed yet (see close()). */
  private readonly openBodies = new Set<UpstreamBody>();
  /** Circuit breakers, rate-limit budgets and remembered 404s of this process (UpstreamHealth). */
  readonly health: UpstreamHealth;

  constructor(@Inject(upstreamConfig.KEY) config: UpstreamConfig, @Optional() health?: UpstreamHealth) {
    this.health = health ?? new UpstreamHealth(config);
    this.addressPolicy = new UpstreamAddressPolicy({ allowPrivate: config.allowPrivate, allowlist: config.allowlist });
    this.agent = new Agent({
      connect: this.addressPolicy.guardedConnector({ timeout: config.connectTimeoutMs }),
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      keepAliveTimeout: 10_000,
      keepAliveMaxTimeout: 600_000,
    });
  }

  /** Register an observer (metrics, auth_url persistence); returns a function that removes it. */
  addObserver(observer: UpstreamClientObserver): () => void {
    this.observers.push(observer);
    return () => {
      const i = this.observers.indexOf(observer);
      if (i >= 0) this.observers.splice(i, 1);
    };
  }

  /** HEAD `/v2<path>`, e.g. path `/library/alpine/manifests/latest`. */
  head(upstream: UpstreamDescriptor, path: string, options: Omit<UpstreamRequestOptions, 'range'> = {}): Promise<UpstreamResponse> {
    return this.request(upstream, 'HEAD', path, options);
  }

  /** GET `/v2<path>`; the body streams (never buffered here). */
  get(upstream: UpstreamDescriptor, path: string, options: UpstreamRequestOptions = {}): Promise<UpstreamResponse> {
    return this.request(upstream, 'GET', path, options);
  }

  /** GET `/v2/<name>/tags/list` with the optional `n` and `last` pagination parameters. */
  tagsList(upstream: UpstreamDescriptor, name: string, options: { n?: number; last?: string; signal?: AbortSignal } = {}): Promise<UpstreamResponse> {
    const query = new URLSearchParams();
    if (options.n !== undefined) query.set('n', String(options.n));
    if (options.last !== undefined) query.set('last', options.last);
    const qs = query.toString() ? `?${query.toString()}` : '';
    return this.request(upstream, 'GET', `/${name}/tags/list${qs}`, { accept: 'application/json', signal: options.signal });
  }

  /**
   * Refuse an upstream URL whose host is or resolves to a non-public address (admin API, before saving).
   * Throws UpstreamError `refused-address`, or `unreachable` when the name does not resolve.
   */
  async assertUrlAllowed(url: string): Promise<void> {
    try {
      await this.addressPolicy.assertUrlAllowed(url);
    } catch (err) {
      throw classifyUpstreamError(err, undefined, url);
    }
  }

  /** Forget what is known about an upstream (tokens, realm, scheme): call after it is updated or deleted. */
  forget(upstreamId: number | string): void {
    this.health.forget(upstreamId);
    this.states.delete(String(upstreamId));
    this.tokens.deleteByPrefix(`${upstreamId}\n`);
  }

  /** After the fills and jobs have drained (beforeApplicationShutdown): nothing of ours reads a body any more. */
  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  /**
   * Closes pooled connections. A body still open after `graceMs` is one nobody will read (undici pauses
   * it and never times it out, and its connection would keep the close waiting forever): it is named in
   * the log and destroyed.
   */
  async close(graceMs = BODY_CLOSE_GRACE_MS): Promise<void> {
    const holding = () => [...this.openBodies].filter((body) => body.holdsConnection);
    if (holding().length > 0) {
      await Promise.race([
        Promise.all(holding().map((body) => new Promise((resolve) => body.once('close', resolve)))),
        new Promise((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
    }
    for (const body of holding()) {
      this.logger.warn(`closing: an upstream body nobody read was still open (${body.describe()}); destroying it`);
      body.on('error', () => undefined);
      body.destroy();
    }
    await this.agent.close();
  }

  /** A registry request: `/v2` + path on the upstream, authenticated as the upstream demands. */
  async request(upstream: UpstreamDescriptor, method: 'GET' | 'HEAD', path: string, options: UpstreamRequestOptions = {}): Promise<UpstreamResponse> {
    if (!path.startsWith('/')) throw new TypeError(`upstream path must start with "/", got "${path}"`);
    if (upstream.credentialsUnreadable) {
      throw new UpstreamError('credentials', 'the stored credentials of the upstream cannot be decrypted; an administrator must set them again', upstream.id);
    }
    const base = normalizeUpstreamUrl(upstream.url);
    const url = `${base}/v2${path}`;
    const state = this.stateFor(upstream, base);
    const scope = this.scopeFor(path);
    const headers: Record<string, string> = { 'user-agent': USER_AGENT };
    if (options.accept !== undefined) {
      headers.accept = typeof options.accept === 'string' ? options.accept : options.accept.join(', ');
    }
    if (options.range) headers.range = options.range;
    const { signal } = options;
    // an open breaker or a 429 pause throws here (nothing is sent, no request event); a remembered 404 answers
    const admission: Admission = this.health.admit(upstream.id, method, path);
    if (admission.remembered404) return rememberedNotFound(url);
    const started = performance.now();
    try {
      let auth = await this.authorizationUpFront(upstream, state, scope, signal);
      let res = await this.exchange(upstream, method, url, headers, auth, signal);
      if (res.status === 401 && new URL(res.url).origin === new URL(url).origin) {
        const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
        const bearer = findBearerChallenge(challenges);
        let retry: Authorization | undefined;
        if (bearer) {
          state.basic = false;
          this.rememberTokenEndpoint(upstream, base, state, tokenEndpointOf(bearer));
          const tokenScope = scope ?? bearer.scope ?? '';
          const rejected = auth?.scheme === 'bearer' ? auth.token : undefined;
          // a valid token for this very scope that is not enough (Docker Hub: a repository that does
          // not exist or is private) will not become enough by fetching it again
          const futile = auth?.scheme === 'bearer' && bearer.error === 'insufficient_scope' && auth.key === this.tokenKey(upstream, state, tokenScope);
          if (!futile) {
            await drain(res.body);
            retry = await this.bearer(upstream, state, tokenScope, signal, rejected);
          }
        } else if (offersBasic(challenges) && basicHeader(upstream) && auth?.scheme !== 'basic') {
          await drain(res.body);
          state.basic = true;
          retry = { scheme: 'basic' };
        }
        if (retry) {
          auth = retry;
          res = await this.exchange(upstream, method, url, headers, auth, signal);
        }
      }
      if (method === 'HEAD') await drain(res.body);
      this.health.answered(admission, method, path, res.status, res.headers);
      this.emitRequest({ upstreamId: upstream.id, method, target: 'registry', status: res.status, durationMs: performance.now() - started });
      return { ...res, authUrl: state.authUrl };
    } catch (err) {
      if (signal?.aborted) {
        this.health.released(admission);
        throw err;
      }
      const error = classifyUpstreamError(err, upstream.id, `${method} ${url}`);
      this.health.failed(admission, error);
      this.logger.warn(`upstream ${upstream.id}: ${error.message}; ${error.detail ?? `${method} ${url}`}`);
      this.emitRequest({
        upstreamId: upstream.id,
        method,
        target: 'registry',
        errorKind: error.kind,
        status: error.status,
        durationMs: performance.now() - started,
      });
      throw error;
    }
  }

  private scopeFor(path: string): string | undefined {
    const name = repositoryNameOfPath(path);
    return name ? `repository:${name}:pull` : undefined;
  }

  private stateFor(upstream: UpstreamDescriptor, base: string): UpstreamState {
    const id = String(upstream.id);
    const fingerprint = createHash('sha256')
      .update(`${base}\0${upstream.username ?? ''}\0${upstream.password ?? ''}`)
      .digest('base64url');
    let state = this.states.get(id);
    if (!state || state.fingerprint !== fingerprint) {
      if (state) this.tokens.deleteByPrefix(`${id}\n`);
      state = { fingerprint, basic: false, authUrl: isHttpUrl(upstream.authUrl) ? upstream.authUrl : undefined };
      this.states.set(id, state);
    } else if (!state.authUrl && isHttpUrl(upstream.authUrl)) {
      state.authUrl = upstream.authUrl;
    }
    return state;
  }

  private tokenKey(upstream: UpstreamDescriptor, state: UpstreamState, scope: string): string {
    return `${upstream.id}\n${state.fingerprint}\n${scope}`;
  }

  private rememberTokenEndpoint(upstream: UpstreamDescriptor, base: string, state: UpstreamState, authUrl: string): void {
    if (state.authUrl === authUrl) return;
    state.authUrl = authUrl;
    if (upstream.authUrl === authUrl) return;
    this.logger.debug(`upstream ${upstream.id} token endpoint: ${authUrl}`);
    for (const o of this.observers) {
      try {
        o.onRealmDiscovered?.(upstream.id, authUrl, base);
      } catch (err) {
        this.logger.warn(`onRealmDiscovered observer failed: ${(err as Error).message}`);
      }
    }
  }

  /** Credentials known to be needed before asking: a cached or proactively fetched token, or Basic. */
  private async authorizationUpFront(
    upstream: UpstreamDescriptor,
    state: UpstreamState,
    scope: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Authorization | undefined> {
    if (state.basic && basicHeader(upstream)) return { scheme: 'basic' };
    if (!state.authUrl || scope === undefined) return undefined;
    const key = this.tokenKey(upstream, state, scope);
    const cached = this.tokens.peek(key);
    if (cached !== undefined) return { scheme: 'bearer', token: cached, key };
    try {
      return await this.bearer(upstream, state, scope, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      // a stale remembered endpoint must not block the request: the upstream's challenge tells the new one
      this.logger.debug(`proactive token fetch for upstream ${upstream.id} failed: ${(err as UpstreamError).detail ?? (err as Error).message}`);
      return undefined;
    }
  }

  private async bearer(
    upstream: UpstreamDescriptor,
    state: UpstreamState,
    scope: string,
    signal: AbortSignal | undefined,
    rejected?: string,
  ): Promise<Authorization> {
    const key = this.tokenKey(upstream, state, scope);
    const authUrl = state.authUrl as string;
    // the shared fetch ignores one caller's abort; that caller stops waiting instead
    const token = await abortable(
      this.tokens.obtain(key, () => this.fetchToken(upstream, authUrl, scope), rejected),
      signal,
    );
    return { scheme: 'bearer', token, key };
  }

  /** Docker token protocol: GET realm?service=...&scope=... (Basic credentials when the upstream has them). */
  private async fetchToken(upstream: UpstreamDescriptor, authUrl: string, scope: string): Promise<UpstreamToken> {
    const url = new URL(authUrl);
    if (scope) url.searchParams.set('scope', scope);
    const started = performance.now();
    let status: number | undefined;
    try {
      const res = await this.exchange(
        upstream,
        'GET',
        url.href,
        { 'user-agent': USER_AGENT, accept: 'application/json' },
        basicHeader(upstream) ? { scheme: 'basic' } : undefined,
        undefined,
      );
      status = res.status;
      const receivedAt = Date.now();
      if (res.status !== 200) {
        const body = await readText(res.body, 4096).catch(() => '');
        throw new UpstreamError('status', `token server answered ${res.status}`, upstream.id, res.status, {
          detail: `GET ${url.origin}${url.pathname} answered ${res.status}${body ? `: ${body.trim().slice(0, 200)}` : ''}`,
        });
      }
      const text = await readText(res.body, MAX_TOKEN_RESPONSE_BYTES);
      let payload: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown } | null;
      try {
        payload = JSON.parse(text) as typeof payload;
      } catch {
        payload = null;
      }
      if (!payload || typeof payload !== 'object') {
        throw new UpstreamError('protocol', 'token server sent no JSON token', upstream.id, undefined, { detail: `GET ${url.origin}${url.pathname}` });
      }
      const value = typeof payload.token === 'string' && payload.token ? payload.token : payload.access_token;
      if (typeof value !== 'string' || !value) {
        throw new UpstreamError('protocol', 'token server sent neither token nor access_token', upstream.id, undefined, {
          detail: `GET ${url.origin}${url.pathname}`,
        });
      }
      this.emitRequest({ upstreamId: upstream.id, method: 'GET', target: 'token', status, durationMs: performance.now() - started });
      return { value, expiresAt: tokenExpiresAt(payload, receivedAt) };
    } catch (err) {
      const error = classifyUpstreamError(err, upstream.id, `token ${url.origin}${url.pathname}`);
      this.emitRequest({ upstreamId: upstream.id, method: 'GET', target: 'token', status, errorKind: error.kind, durationMs: performance.now() - started });
      throw error;
    }
  }

  /**
   * One request, following up to MAX_UPSTREAM_REDIRECTS redirects. Credentials are sent only to the
   * origin that was asked; once a redirect leaves it they are dropped for the rest of the chain.
   */
  private async exchange(
    upstream: UpstreamDescriptor,
    method: 'GET' | 'HEAD',
    url: string,
    headers: Record<string, string>,
    auth: Authorization | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Exchange> {
    let current = new URL(url);
    let authorization = auth?.scheme === 'bearer' ? `Bearer ${auth.token}` : auth?.scheme === 'basic' ? basicHeader(upstream) : undefined;
    for (let hop = 0; ; hop++) {
      const res = await this.dispatch(current, method, authorization ? { ...headers, authorization } : headers, signal);
      const location = res.headers.location;
      if (!REDIRECT_STATUSES.has(res.statusCode) || !location) {
        return { status: res.statusCode, headers: res.headers, body: res.body, url: current.href };
      }
      await drain(res.body);
      if (hop >= MAX_UPSTREAM_REDIRECTS) {
        throw new UpstreamError('protocol', `more than ${MAX_UPSTREAM_REDIRECTS} redirects`, upstream.id, undefined, { detail: `from ${url}` });
      }
      let next: URL;
      try {
        next = new URL(Array.isArray(location) ? location[0] : location, current);
      } catch {
        throw new UpstreamError('protocol', 'redirect to an invalid location', upstream.id, undefined, { detail: `from ${current.href}` });
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new UpstreamError('protocol', `redirect to a non-HTTP location (${next.protocol})`, upstream.id, undefined, { detail: `from ${current.href}` });
      }
      if (next.origin !== current.origin) authorization = undefined;
      current = next;
    }
  }

  /** One HTTP exchange; an idempotent request that dies on a reused socket before an answer is retried once. */
  private async dispatch(url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal | undefined) {
    const options: Dispatcher.DispatchOptions = { origin: url.origin, path: `${url.pathname}${url.search}`, method, headers };
    let res;
    try {
      res = await requestUpstream(this.agent, options, signal);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (signal?.aborted || typeof code !== 'string' || !RETRYABLE_SOCKET_CODES.has(code)) throw err;
      res = await requestUpstream(this.agent, options, signal);
    }
    const body = res.body;
    if (!body.destroyed) {
      this.openBodies.add(body);
      body.once('close', () => this.openBodies.delete(body));
    }
    return res;
  }

  private emitRequest(event: UpstreamRequestEvent): void {
    for (const o of this.observers) {
      try {
        o.onRequest?.(event);
      } catch (err) {
        this.logger.warn(`onRequest observer failed: ${(err as Error).message}`);
      }
    }
  }
}
