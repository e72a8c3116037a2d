/** Credentials of an `Authorization: Basic base64(username:password)` header (RFC 7617). */
export interface BasicCredentials {
  username: string;
  password: string;
}

/**
 * The Basic credentials of an Authorization header: null when the header is absent or uses another
 * scheme, `'malformed'` when it says Basic but cannot be decoded into `username:password`.
 */
export function parseBasicAuthorization(header: string | undefined): BasicCredentials | null | 'malformed' {
  if (!header) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=._~-]*)\s*$/i.exec(header);
  if (!match) return /^Basic(\s|$)/i.test(header) ? 'malformed' : null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0 || colon === decoded.length - 1) return 'malformed';
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
