/** The longest upstream URL we store (the `upstreams.url` column). */
export const MAX_UPSTREAM_URL_LENGTH = 255;

/** An upstream URL that cannot be used; `field` names the API field for a 400 answer. */
export class InvalidUpstreamUrlError extends Error {
  readonly field = 'url';

  constructor(message: string) {
    super(message);
    this.name = 'InvalidUpstreamUrlError';
  }
}

/**
 * The canonical form of an upstream registry URL: `http(s)://host[:port][/path]`, lower-case scheme and
 * host, default port dropped, no trailing `/`, no trailing `/v2` (the client adds `/v2` itself).
 * Credentials, query strings and fragments are refused (credentials have their own fields).
 */
export function normalizeUpstreamUrl(input: string): string {
  const raw = typeof input === 'string' ? input.trim() : '';
  if (!raw) throw new InvalidUpstreamUrlError('url is required');
  if (raw.length > 2048) throw new InvalidUpstreamUrlError(`url is too long (maximum is ${MAX_UPSTREAM_URL_LENGTH} characters)`);
  if (!/^https?:\/\//i.test(raw)) throw new InvalidUpstreamUrlError('url must start with http:// or https://');
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new InvalidUpstreamUrlError('url is not a valid URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new InvalidUpstreamUrlError('url must start with http:// or https://');
  }
  if (!parsed.hostname) throw new InvalidUpstreamUrlError('url has no host');
  if (parsed.username || parsed.password) {
    throw new InvalidUpstreamUrlError('url must not contain credentials; use the username and password fields');
  }
  if (parsed.search || raw.includes('?')) throw new InvalidUpstreamUrlError('url must not contain a query string');
  if (parsed.hash || raw.includes('#')) throw new InvalidUpstreamUrlError('url must not contain a fragment');

  let path = parsed.pathname.replace(/\/+$/, '');
  if (/\/v2$/i.test(path)) path = path.slice(0, -3).replace(/\/+$/, '');
  const normalized = `${parsed.protocol}//${parsed.host}${path}`;
  if (normalized.length > MAX_UPSTREAM_URL_LENGTH) {
    throw new InvalidUpstreamUrlError(`url is too long (maximum is ${MAX_UPSTREAM_URL_LENGTH} characters)`);
  }
  return normalized;
}

const REPOSITORY_PATH = /^\/(.+)\/(?:manifests\/[^/]+|blobs\/[^/]+|tags\/list|referrers\/[^/]+)$/;

/**
 * The repository name a registry-relative path addresses (`/library/alpine/manifests/latest` ->
 * `library/alpine`), or undefined for paths outside a repository (`/`, `/_catalog`).
 */
export function repositoryNameOfPath(path: string): string | undefined {
  const bare = path.split(/[?#]/, 1)[0];
  return REPOSITORY_PATH.exec(bare)?.[1];
}
