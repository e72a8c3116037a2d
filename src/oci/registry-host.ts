/**
 * Registry host names as image references carry them (`docker.io`, `ghcr.io`, `registry.local:5000`):
 * what containerd sends as `?ns=<host>` to a mirror, and what an upstream declares it mirrors.
 *
 * Canonical form: lower case, no default port (`:443`), and Docker Hub's three names
 * (`docker.io`, `index.docker.io`, `registry-1.docker.io`) all `docker.io`.
 */

/** A DNS name (labels of letters, digits and `-`), an IPv4 address, or a bracketed IPv6 address; optional port. */
const HOST = /^(?:(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?))*|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?$/;

const HOST_MAX_LENGTH = 255;

/** Docker Hub's names; references say `docker.io`, the API lives at `registry-1.docker.io`. */
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

export const DOCKER_HUB_HOST = 'docker.io';

/** The canonical form of a registry host, or null when `value` is not one. */
export function canonicalRegistryHost(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const host = value.trim().toLowerCase();
  if (host.length === 0 || host.length > HOST_MAX_LENGTH) return null;
  const match = HOST.exec(host);
  if (!match) return null;
  const port = match[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return null;
  const withoutDefaultPort = port === '443' ? host.slice(0, -4) : host;
  return DOCKER_HUB_ALIASES.has(withoutDefaultPort) ? DOCKER_HUB_HOST : withoutDefaultPort;
}

/** The canonical registry host an upstream URL (`https://registry-1.docker.io`) serves, or null. */
export function registryHostOfUrl(url: string): string | null {
  try {
    return canonicalRegistryHost(new URL(url).host);
  } catch {
    return null;
  }
}
