/**
 * The public id of a cache entry, as GitLab's API exposes it: URL-safe Base64 (padded) of
 * `"<upstream_id> <relative_path>"`. Decoding accepts the standard alphabet and missing padding too.
 */
export interface CacheEntryKey {
  upstreamId: number;
  relativePath: string;
}

export function encodeCacheEntryId(upstreamId: number, relativePath: string): string {
  const base64url = Buffer.from(`${upstreamId} ${relativePath}`, 'utf8').toString('base64url');
  return base64url + '='.repeat((4 - (base64url.length % 4)) % 4);
}

/** The key an id names, or undefined when the id is not one this API produced. */
export function decodeCacheEntryId(id: string): CacheEntryKey | undefined {
  if (typeof id !== 'string' || id.length === 0 || id.length > 8192 || !/^[A-Za-z0-9_\-+/]+={0,2}$/.test(id)) return undefined;
  const text = Buffer.from(id, 'base64').toString('utf8');
  const match = /^([1-9]\d{0,9}) (\S.*)$/s.exec(text);
  if (!match) return undefined;
  const upstreamId = Number(match[1]);
  if (upstreamId > 2_147_483_647 || match[2].includes('\uFFFD')) return undefined;
  return { upstreamId, relativePath: match[2] };
}

/** Relative paths are stored with one leading `/` (`/library/alpine/manifests/latest`); GitLab's form has none. */
export function normalizeRelativePath(path: string): string {
  return `/${path.replace(/^\/+/, '')}`;
}
