/**
 * What went wrong when talking to an upstream registry, in the terms the pull service decides on:
 * - `unreachable`: DNS failure, connection refused or reset, socket closed mid-response;
 * - `timeout`: connect, response-headers or body timeout;
 * - `refused-address`: the address policy forbids the host (SSRF guard), nothing was sent;
 * - `status`: the upstream (or its token server) answered with an HTTP status that ends the exchange;
 * - `protocol`: the upstream answered something that is not a registry answer (an unreadable token
 *   response, a redirect loop, a redirect to a non-HTTP location);
 * - `credentials`: the upstream's stored credentials cannot be decrypted, nothing was sent.
 * Unreachable, timeout, 5xx and 429 mean "the upstream is down": serve stale content when there is some.
 *
 * The message may reach a pull client (or an admin's `test` result): it names what went wrong, never a
 * URL, an address or what a token server said. Those go in `detail`, which is for the logs only.
 */
export type UpstreamErrorKind = 'unreachable' | 'timeout' | 'refused-address' | 'status' | 'protocol' | 'credentials';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly upstreamId: number | string | undefined,
    /** The HTTP status, for kind `status`. */
    readonly status?: number,
    options?: { cause?: unknown; detail?: string },
  ) {
    super(message, options);
    this.name = 'UpstreamError';
    this.detail = options?.detail;
  }

  /** For operators (logs): the URL asked, the address refused, the transport error, the token server's answer. */
  readonly detail?: string;

  /** True when the upstream should be treated as down (stale content may be served instead). */
  get isOutage(): boolean {
    if (this.kind === 'status') return this.status === 429 || (this.status ?? 0) >= 500;
    return this.kind === 'unreachable' || this.kind === 'timeout' || this.kind === 'protocol';
  }
}

/** What an admin and a pull client are told about a refused address: neither the host nor what it resolved to. */
export const NOT_PUBLIC = 'the upstream host is not a public address (allow it with UPSTREAM_ALLOW_PRIVATE or UPSTREAM_ALLOWLIST)';

/**
 * Raised by the address policy (resolve time or connect time) when a host or address is not allowed.
 * `host` and `address` are for the logs (`detail`); the message says neither.
 */
export class RefusedAddressError extends Error {
  readonly code = 'EUPSTREAMREFUSED';

  constructor(
    readonly host: string,
    readonly address: string | undefined,
  ) {
    super(NOT_PUBLIC);
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
  const where = target ? `${target}: ` : '';
  const refusal = findRefusal(err);
  if (refusal) {
    const resolved = refusal.address && refusal.address !== refusal.host ? ` (resolves to ${refusal.address})` : '';
    return new UpstreamError('refused-address', refusal.message, upstreamId, undefined, {
      cause: err,
      detail: `${where}host ${refusal.host}${resolved} refused`,
    });
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  const message = err instanceof Error ? err.message || String((code as string | number | undefined) ?? err.name) : String(err);
  // the transport's own message names hosts and addresses (`connect ECONNREFUSED 10.0.0.8:443`): only its code is said
  const reason = typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? ` (${code})` : '';
  const options = { cause: err, detail: `${where}${message}` };
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return new UpstreamError('timeout', `upstream timed out${reason}`, upstreamId, undefined, options);
  return new UpstreamError('unreachable', `upstream unreachable${reason}`, upstreamId, undefined, options);
}
