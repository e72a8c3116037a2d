import type { UpstreamDescriptor } from './client/upstream-client.js';

/** One upstream of the registry being pulled from, credentials decrypted, in position order. */
export interface PullUpstream {
  id: number;
  groupId: number;
  position: number;
  cacheValidityHours: number;
  descriptor: UpstreamDescriptor;
}

/** The registry a pull is addressed to, once the caller has been authorised for it. */
export interface PullTarget {
  registryId: number;
  groupId: number;
  /** Ordered by position (1 first). */
  upstreams: PullUpstream[];
}
