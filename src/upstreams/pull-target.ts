import type { UpstreamDescriptor } from './client/upstream-client.js';

/** One upstream of the registry being pulled from, credentials decrypted, in position order. */
export interface PullUpstream {
  id: number;
  groupId: number;
  position: number;
  cacheValidityHours: number;
  /** Canonical registry hosts it serves besides its URL's (see registry-host.ts); `?ns=` routing. */
  mirrorHosts: string[];
  descriptor: UpstreamDescriptor;
}

/** The registry a pull is addressed to, once the caller has been authorised for it. */
export interface PullTarget {
  registryId: number;
  groupId: number;
  /** Anyone may pull from it without credentials. */
  anonymousPull: boolean;
  /** Ordered by position (1 first). */
  upstreams: PullUpstream[];
}

/**
 * The registry and the upstreams this pull may ask, in order: what a remembered or shared answer is valid
 * for. A registry narrowed to some of its upstreams (mirror `ns`) is a scope of its own.
 */
export function pullScopeOf(target: PullTarget): string {
  return `${target.registryId}:${target.upstreams.map((u) => u.id).join(',')}`;
}
