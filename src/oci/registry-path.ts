/**
 * The pull routes under `/v2/virtual_registries/containers/<id>/` (the caller accepts the `container`
 * spelling too and hands over what follows it), parsed into a typed request:
 *
 *     <name>/manifests/<tag|digest>     <name>/blobs/<digest>
 *     <name>/tags/list                  <name>/referrers/<digest>
 *
 * A name has any number of `/` components (and may itself contain `manifests`, `blobs`, ...), so the
 * path is read from the right. The same shapes, with a leading `/`, are the cache entries'
 * `relative_path` (`/library/alpine/manifests/latest`).
 *
 * Errors, all OciError with a 4xx status:
 * - path traversal or smuggling (`.`/`..` segments, empty segments, any `%` escape such as `%2e%2e` or
 *   `%2f`, backslash, NUL or other control characters, absurd length): NAME_INVALID 400;
 * - a registry id that is not a positive integer within Postgres `integer` range: NAME_UNKNOWN 404,
 *   the same answer as for a registry that does not exist, so malformed and unknown ids look alike;
 * - a path that is none of the four endpoints (`library/alpine`, `x/tags/all`): NAME_UNKNOWN 404;
 * - a bad name: NAME_INVALID; a bad tag: TAG_INVALID; a bad digest: DIGEST_INVALID (all 400).
 * The input is a path only: the caller strips the query string (`?n=`, `?artifactType=`).
 */
import { Digest } from './digest.js';
import { OciError, OciErrorCode } from './oci-error.js';
import { ManifestReference } from './reference.js';
import { RepositoryName } from './repository-name.js';

export type RegistryRequestKind = 'manifest' | 'blob' | 'tags' | 'referrers';

export interface ManifestRequest {
  readonly kind: 'manifest';
  readonly name: RepositoryName;
  readonly reference: ManifestReference;
}

export interface BlobRequest {
  readonly kind: 'blob';
  readonly name: RepositoryName;
  readonly digest: Digest;
}

export interface TagsRequest {
  readonly kind: 'tags';
  readonly name: RepositoryName;
}

export interface ReferrersRequest {
  readonly kind: 'referrers';
  readonly name: RepositoryName;
  readonly digest: Digest;
}

/** A pull request within one repository (also the parsed form of a cache entry's relative_path). */
export type RepositoryRequest = ManifestRequest | BlobRequest | TagsRequest | ReferrersRequest;

/** A pull request addressed to one virtual registry. */
export type RegistryRequest = RepositoryRequest & { readonly registryId: number };

/** Largest id a Postgres `integer` column holds; bigger ids cannot exist and never reach a query. */
export const REGISTRY_ID_MAX = 2_147_483_647;

/** Longer than any valid `<name>/<endpoint>/<reference>` (255 + 11 + 135): refused before splitting. */
const PATH_MAX_LENGTH = 512;

/** The path segment naming each endpoint, and back. */
const SEGMENT_OF_KIND: Readonly<Record<Exclude<RegistryRequestKind, 'tags'>, string>> = {
  manifest: 'manifests',
  blob: 'blobs',
  referrers: 'referrers',
};

/** `%` (any percent-escape), backslash, NUL and other C0/DEL control characters. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const UNSAFE_CHARACTERS = /[%\\\u0000-\u001f\u007f]/;

function nameInvalid(message: string, path: string): OciError {
  return new OciError(OciErrorCode.NAME_INVALID, message, { detail: { path: path.slice(0, PATH_MAX_LENGTH) } });
}

/** Refuse traversal and encoding tricks with NAME_INVALID; returns the `/` segments. */
function safeSegments(path: string): string[] {
  if (typeof path !== 'string' || path.length === 0) throw nameInvalid('empty registry path', '');
  if (path.length > PATH_MAX_LENGTH) throw nameInvalid('registry path too long', path);
  if (UNSAFE_CHARACTERS.test(path)) throw nameInvalid('encoded, control or backslash characters are not allowed in a registry path', path);
  const segments = path.split('/');
  for (const segment of segments) {
    if (segment.length === 0) throw nameInvalid('empty path segment', path);
    if (segment === '.' || segment === '..') throw nameInvalid('path traversal is not allowed', path);
  }
  return segments;
}

/** A registry id route parameter: a positive integer, otherwise NAME_UNKNOWN (404, as for a missing registry). */
export function parseRegistryId(value: string): number {
  const id = typeof value === 'string' && /^[1-9][0-9]{0,9}$/.test(value) ? Number(value) : NaN;
  if (!(id <= REGISTRY_ID_MAX)) {
    throw new OciError(OciErrorCode.NAME_UNKNOWN, 'registry not found', {
      detail: { registry_id: typeof value === 'string' ? value.slice(0, 32) : undefined },
    });
  }
  return id;
}

/** Parse `<name>/manifests/<ref>`, `<name>/blobs/<digest>`, `<name>/tags/list` or `<name>/referrers/<digest>`. */
export function parseRepositoryPath(path: string): RepositoryRequest {
  const segments = safeSegments(path);
  const last = segments[segments.length - 1];
  const endpoint = segments.length >= 2 ? segments[segments.length - 2] : undefined;
  const name = () => RepositoryName.parse(segments.slice(0, -2).join('/'));
  if (endpoint === 'tags' && last === 'list') return { kind: 'tags', name: name() };
  if (endpoint === SEGMENT_OF_KIND.manifest) return { kind: 'manifest', name: name(), reference: ManifestReference.parse(last) };
  if (endpoint === SEGMENT_OF_KIND.blob) return { kind: 'blob', name: name(), digest: Digest.parse(last) };
  if (endpoint === SEGMENT_OF_KIND.referrers) return { kind: 'referrers', name: name(), digest: Digest.parse(last) };
  throw new OciError(OciErrorCode.NAME_UNKNOWN, 'unknown registry endpoint', { detail: { path: path.slice(0, PATH_MAX_LENGTH) } });
}

/** Parse the `:id` route parameter and the remainder after `/v2/virtual_registries/containers/:id/`. */
export function parseRegistryPath(registryId: string, remainder: string): RegistryRequest {
  // Traversal in the remainder is NAME_INVALID whatever the id looks like: the remainder is parsed first.
  const request = parseRepositoryPath(remainder);
  return { ...request, registryId: parseRegistryId(registryId) };
}

/** Parse everything after `/v2/virtual_registries/containers/`: `<id>/<name>/<endpoint>/<reference>`. */
export function parseRegistryRoute(path: string): RegistryRequest {
  const known = recentRoutes.get(path);
  if (known) return known;
  const request = parseRegistryRouteUncached(path);
  if (recentRoutes.size >= RECENT_ROUTES_MAX) recentRoutes.delete(recentRoutes.keys().next().value!);
  recentRoutes.set(path, request);
  return request;
}

/**
 * Routes parsed lately (a pull asks for the same manifests and blobs over and over): parsing is pure and
 * its results are immutable, so a valid path is parsed once. Oldest first out; invalid paths are never kept.
 */
const recentRoutes = new Map<string, RegistryRequest>();
const RECENT_ROUTES_MAX = 4096;

function parseRegistryRouteUncached(path: string): RegistryRequest {
  const slash = typeof path === 'string' ? path.indexOf('/') : -1;
  if (slash < 0) {
    safeSegments(path);
    throw new OciError(OciErrorCode.NAME_UNKNOWN, 'unknown registry endpoint', { detail: { path: path.slice(0, PATH_MAX_LENGTH) } });
  }
  return parseRegistryPath(path.slice(0, slash), path.slice(slash + 1));
}

/**
 * A cache entry's relative_path: `/library/alpine/manifests/latest`, `/library/alpine/blobs/sha256:...`,
 * `/library/alpine/tags/list`, `/library/alpine/referrers/sha256:...`. String inputs are validated.
 */
export function relativePath(name: RepositoryName | string, kind: 'manifest', reference: ManifestReference | Digest | string): string;
export function relativePath(name: RepositoryName | string, kind: 'blob' | 'referrers', digest: Digest | string): string;
export function relativePath(name: RepositoryName | string, kind: 'tags'): string;
export function relativePath(name: RepositoryName | string, kind: RegistryRequestKind, reference?: ManifestReference | Digest | string): string;
export function relativePath(name: RepositoryName | string, kind: RegistryRequestKind, reference?: ManifestReference | Digest | string): string {
  const repository = typeof name === 'string' ? RepositoryName.parse(name) : name;
  if (kind === 'tags') {
    if (reference !== undefined) throw new TypeError('tags/list takes no reference');
    return `/${repository.value}/tags/list`;
  }
  if (reference === undefined) throw new TypeError(`a ${kind} path needs a reference`);
  let ref: string;
  if (kind === 'manifest') {
    if (typeof reference === 'string') ref = ManifestReference.toString(ManifestReference.parse(reference));
    else if (reference instanceof Digest) ref = reference.toString();
    else ref = ManifestReference.toString(reference);
  } else {
    if (typeof reference === 'string') ref = Digest.parse(reference).toString();
    else if (reference instanceof Digest) ref = reference.toString();
    else if (reference.kind === 'digest') ref = reference.digest.toString();
    else throw new OciError(OciErrorCode.DIGEST_INVALID, `a ${kind} is addressed by digest, not by tag`);
  }
  return `/${repository.value}/${SEGMENT_OF_KIND[kind]}/${ref}`;
}

/** The relative_path of a parsed request. */
export function relativePathOf(request: RepositoryRequest): string {
  switch (request.kind) {
    case 'manifest':
      return relativePath(request.name, 'manifest', request.reference);
    case 'blob':
    case 'referrers':
      return relativePath(request.name, request.kind, request.digest);
    case 'tags':
      return relativePath(request.name, 'tags');
  }
}

/** Parse a cache entry's relative_path back into a request (the inverse of `relativePath`). */
export function parseRelativePath(path: string): RepositoryRequest {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw nameInvalid('a relative path starts with "/"', typeof path === 'string' ? path : '');
  }
  return parseRepositoryPath(path.slice(1));
}
