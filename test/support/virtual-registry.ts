import { TEST_ADMIN_TOKEN, type TestApp } from './test-app.js';

export interface UpstreamSpec {
  url: string;
  username?: string;
  password?: string;
  cacheValidityHours?: number;
  name?: string;
  /** Registry hosts the upstream declares it mirrors (`mirror_hosts`). */
  mirrorHosts?: string[];
}

export interface VirtualRegistry {
  groupId: number;
  registryId: number;
  upstreamIds: number[];
  /** the owner's (by default root's) personal access token with read_virtual_registry */
  pullUser: { username: string; token: string };
  /** `127.0.0.1:<port>/virtual_registries/containers/<id>` (image reference prefix for skopeo/podman) */
  imagePrefix: string;
}

let counter = 0;

/** A user who creates and pulls from registries instead of the bootstrap admin: username and `api` token. */
export interface RegistryOwner {
  username: string;
  token: string;
}

/** Calls the admin API as the bootstrap admin; throws with the body on an unexpected status. */
export async function adminApi<T = any>(app: Pick<TestApp, 'url'>, method: string, path: string, body?: unknown, expected = [200, 201, 204]): Promise<T> {
  return apiAs<T>(app, TEST_ADMIN_TOKEN, method, path, body, expected);
}

async function apiAs<T>(app: Pick<TestApp, 'url'>, token: string, method: string, path: string, body?: unknown, expected = [200, 201, 204]): Promise<T> {
  const res = await fetch(`${app.url}${path}`, {
    method,
    headers: { 'private-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!expected.includes(res.status)) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * A group, a registry and its upstreams in this order, plus a pull credential, through the admin API:
 * as the bootstrap admin, or as `owner` (any user with an `api` token, who becomes the group's owner).
 */
export async function createVirtualRegistry(app: Pick<TestApp, 'url'>, upstreams: UpstreamSpec[], owner?: RegistryOwner): Promise<VirtualRegistry> {
  const n = ++counter;
  const api = <T>(method: string, path: string, body?: unknown) => apiAs<T>(app, owner?.token ?? TEST_ADMIN_TOKEN, method, path, body);
  const group = await api<{ id: number }>('POST', '/api/v4/groups', { name: `Group ${n}`, path: `group-${n}-${Date.now()}` });
  const registry = await api<{ id: number }>('POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: `registry-${n}` });
  const upstreamIds: number[] = [];
  for (const [i, u] of upstreams.entries()) {
    const created = await api<{ id: number }>('POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, {
      name: u.name ?? `upstream-${n}-${i}`,
      url: u.url,
      ...(u.username ? { username: u.username, password: u.password } : {}),
      ...(u.cacheValidityHours !== undefined ? { cache_validity_hours: u.cacheValidityHours } : {}),
      ...(u.mirrorHosts !== undefined ? { mirror_hosts: u.mirrorHosts } : {}),
    });
    upstreamIds.push(created.id);
  }
  const pat = await api<{ token: string }>('POST', '/api/v4/user/personal_access_tokens', {
    name: `pull-${n}`,
    scopes: ['read_virtual_registry'],
  });
  return {
    groupId: group.id,
    registryId: registry.id,
    upstreamIds,
    pullUser: { username: owner?.username ?? 'root', token: pat.token },
    imagePrefix: `${new URL(app.url).host}/virtual_registries/containers/${registry.id}`,
  };
}

/** A registry JWT for pulling `name` from the registry (the docker token flow with Basic credentials). */
export async function pullToken(app: Pick<TestApp, 'url'>, vr: VirtualRegistry, name: string): Promise<string> {
  const scope = `repository:virtual_registries/containers/${vr.registryId}/${name}:pull`;
  const res = await fetch(`${app.url}/jwt/auth?service=virtual_registry&scope=${encodeURIComponent(scope)}`, {
    headers: { authorization: `Basic ${Buffer.from(`${vr.pullUser.username}:${vr.pullUser.token}`).toString('base64')}` },
  });
  if (res.status !== 200) throw new Error(`token request -> ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/** GET/HEAD a registry path (`<name>/manifests/<ref>` etc.) through the app with a fresh token. */
export async function registryFetch(
  app: Pick<TestApp, 'url'>,
  vr: VirtualRegistry,
  name: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; token?: string } = {},
): Promise<Response> {
  const token = init.token ?? (await pullToken(app, vr, name));
  return fetch(`${app.url}/v2/virtual_registries/containers/${vr.registryId}/${name}/${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${token}`, ...init.headers },
  });
}
