/**
 * What went wrong when talking to an upstream registry, in the terms the pull service decides on:
 * - `unreachable`: DNS failure, connection refused or reset, socket closed mid-response;
 * - `timeout`: connect, response-headers or body timeout;
 * - `refused-address`: the address policy forbids the host (SSRF guard), nothing was sent;
 * - `status`: the upstream (or its token server) answered with an HTTP status that ends the exchange;
 * - `protocol`: the upstream answered something that is not a registry answer (an unreadable token
 *   response, a redirect loop, a redirect to a non-HTTP location).
 * Unreachable, timeout, 5xx and 429 mean "the upstream is down": serve stale content when there is some.
 */
export type UpstreamErrorKind = 'unreachable' | 'timeout' | 'refused-address' | 'status' | 'protocol';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly upstreamId: number | string | undefined,
    /** The HTTP status, for kind `status`. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpstreamError';
  }

  /** True when the upstream should be treated as down (stale content may be served instead). */
  get isOutage(): boolean {
    if (this.kind === 'status') return this.status === 429 || (this.status ?? 0) >= 500;
    return this.kind === 'unreachable' || this.kind === 'timeout' || this.kind === 'protocol';
  }
}

/** Raised by the address policy (resolve time or connect time) when a host or address is not allowed. */
export class RefusedAddressError extends Error {
  readonly code = 'EUPSTREAMREFUSED';

  constructor(
    readonly host: string,
    readonly address: string | undefined,
  ) {
    super(
      address && address !== host
        ? `upstream host ${host} resolves to ${address}, a non-public address (allow it with UPSTREAM_ALLOW_PRIVATE or UPSTREAM_ALLOWLIST)`
        : `upstream address ${host} is not public (allow it with UPSTREAM_ALLOW_PRIVATE or UPSTREAM_ALLOWLIST)`,
    );
    this.name = 'RefusedAddressError';
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function findRefusal(err: unknown): RefusedAddressError | undefined {
  for (let e = err, depth = 0; e && depth < 5; depth++) {
    if (e instanceof RefusedAddressError) return e;
    if (e instanceof AggregateError) {
      const inner = e.errors.find((x) => x instanceof RefusedAddressError);
      if (inner) return inner as RefusedAddressError;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Translate a transport error (undici, net, dns, or an error a response body stream emitted)
 * into an UpstreamError. An UpstreamError passes through unchanged.
 */
export function classifyUpstreamError(err: unknown, upstreamId: number | string | undefined, target?: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const where = target ? ` (${target})` : '';
  const refusal = findRefusal(err);
  if (refusal) return new UpstreamError('refused-address', refusal.message, upstreamId, undefined, { cause: err });
  const code = (err as { code?: unknown } | undefined)?.code;
  const message = err instanceof Error ? err.message || String(code ?? err.name) : String(err);
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) {
    return new UpstreamError('timeout', `upstream timed out${where}: ${message}`, upstreamId, undefined, { cause: err });
  }
  return new UpstreamError('unreachable', `upstream unreachable${where}: ${message}`, upstreamId, undefined, { cause: err });
}
