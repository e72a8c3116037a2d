/**
 * Docker token-auth scopes for the virtual registries:
 *
 *     repository:virtual_registries/containers/<registry id>/<image name>:pull
 *
 * (the `container` spelling is accepted too, as on the pull routes). Mirror clients also ask for the
 * image's own name, `repository:<image name>:pull` (containerd adds it to the challenge's scope; Docker
 * and podman only send it on a mirror without a path): such a "bare" scope is read as the registry the
 * token request names (`?registry=<id>`, which the mirror routes' challenges put in the realm) or the
 * root `/v2` registry of the request's Host. Anything else (other resource types, push) is never
 * granted: a token request silently drops it.
 */
import { REGISTRY_ID_MAX } from '../oci/registry-path.js';
import { RepositoryName } from '../oci/repository-name.js';

/** The `service` of the challenge and the audience of registry tokens. */
export const REGISTRY_SERVICE = 'virtual_registry';

export const PULL_ACTION = 'pull';

/** A scope a client asked for, naming one repository of one virtual registry. */
export interface RepositoryScope {
  registryId: number;
  /** The image name within the registry, e.g. `library/alpine`. */
  repository: string;
  /** The resource name as the client wrote it, e.g. `virtual_registries/containers/1/library/alpine`. */
  resourceName: string;
  actions: string[];
}

/** One entry of a token's `access` claim (the Docker token format). */
export interface AccessEntry {
  type: 'repository';
  name: string;
  actions: string[];
}

const RESOURCE_NAME = /^virtual_registries\/containers?\/([1-9][0-9]{0,9})\/(.+)$/;
const ACTION = /^[a-z*]+$/;
/** Longer scopes are never valid (a 255-character name plus the prefix and actions). */
const SCOPE_MAX_LENGTH = 512;

/** The scope a pull of `repository` from registry `registryId` needs (also what a challenge names). */
export function pullScope(registryId: number, repository: string): string {
  return `repository:virtual_registries/containers/${registryId}/${repository}:${PULL_ACTION}`;
}

/** `virtual_registries/containers/<id>/<name>` -> its registry id and image name, or null. */
export function parseResourceName(resourceName: string): { registryId: number; repository: string } | null {
  const match = RESOURCE_NAME.exec(resourceName);
  if (!match) return null;
  const registryId = Number(match[1]);
  if (registryId > REGISTRY_ID_MAX || !RepositoryName.isValid(match[2])) return null;
  return { registryId, repository: match[2] };
}

/** `repository:<name>:<actions>` -> the parsed scope, or null for anything this registry never grants. */
export function parseRepositoryScope(scope: string): RepositoryScope | null {
  if (scope.length > SCOPE_MAX_LENGTH) return null;
  const firstColon = scope.indexOf(':');
  const lastColon = scope.lastIndexOf(':');
  if (firstColon < 0 || lastColon <= firstColon) return null;
  if (scope.slice(0, firstColon) !== 'repository') return null;
  const resourceName = scope.slice(firstColon + 1, lastColon);
  const actions = scope.slice(lastColon + 1).split(',');
  if (actions.some((a) => !ACTION.test(a))) return null;
  const parsed = parseResourceName(resourceName);
  if (!parsed) return null;
  return { ...parsed, resourceName, actions: [...new Set(actions)] };
}

/** `repository:<image name>:<actions>` of a mirror client (no virtual registry prefix), or null. */
export function parseBareRepositoryScope(scope: string): { repository: string; actions: string[] } | null {
  if (scope.length > SCOPE_MAX_LENGTH) return null;
  const firstColon = scope.indexOf(':');
  const lastColon = scope.lastIndexOf(':');
  if (firstColon < 0 || lastColon <= firstColon) return null;
  if (scope.slice(0, firstColon) !== 'repository') return null;
  const repository = scope.slice(firstColon + 1, lastColon);
  const actions = scope.slice(lastColon + 1).split(',');
  if (actions.some((a) => !ACTION.test(a)) || !RepositoryName.isValid(repository)) return null;
  return { repository, actions: [...new Set(actions)] };
}

/**
 * A requested scope as the registry scope it stands for: a prefixed one as it is; a bare one of a mirror
 * client for `mirrorRegistryId` (its resource name made the prefixed one), or null without it.
 */
export function resolveRequestedScope(scope: string, mirrorRegistryId: number | undefined): RepositoryScope | null {
  const prefixed = parseRepositoryScope(scope);
  if (prefixed) return prefixed;
  if (mirrorRegistryId === undefined) return null;
  const bare = parseBareRepositoryScope(scope);
  if (!bare) return null;
  return {
    registryId: mirrorRegistryId,
    repository: bare.repository,
    resourceName: `virtual_registries/containers/${mirrorRegistryId}/${bare.repository}`,
    actions: bare.actions,
  };
}

/**
 * At most this many scopes of one token request are considered; the rest are dropped, as unknown ones
 * are. Clients ask for one or two; the cap bounds the work of a request and the size of the token.
 */
export const MAX_SCOPES_PER_REQUEST = 64;

/**
 * The scopes of a token request: `scope` may be repeated (GET) or space-separated (the OAuth2 form);
 * empty values are ignored, duplicates removed, and only the first MAX_SCOPES_PER_REQUEST kept.
 */
export function requestedScopes(values: string | string[] | undefined): string[] {
  const list = values === undefined ? [] : Array.isArray(values) ? values : [values];
  const scopes = new Set<string>();
  for (const value of list) {
    for (const scope of String(value).split(/\s+/)) {
      if (scope) scopes.add(scope);
      if (scopes.size === MAX_SCOPES_PER_REQUEST) return [...scopes];
    }
  }
  return [...scopes];
}

/** Whether a token's `access` claim covers pulling `repository` from registry `registryId` (either spelling). */
export function accessCovers(access: unknown, registryId: number, repository: string): boolean {
  if (!Array.isArray(access)) return false;
  return access.some((entry: Partial<AccessEntry> | null) => {
    if (!entry || entry.type !== 'repository' || typeof entry.name !== 'string' || !Array.isArray(entry.actions)) return false;
    if (!entry.actions.includes(PULL_ACTION)) return false;
    const parsed = parseResourceName(entry.name);
    return parsed !== null && parsed.registryId === registryId && parsed.repository === repository;
  });
}
