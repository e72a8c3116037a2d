import { OciError, OciErrorCode, canonicalRegistryHost, registryHostOfUrl } from '../oci/index.js';
import type { PullTarget, PullUpstream } from '../upstreams/pull-target.js';

/**
 * `?ns=<host>` routing (containerd sends it to every mirror: the registry host of the image reference
 * the node asked for). Only the registry's upstreams that serve that host are consulted: the host of
 * the upstream's URL (Docker Hub's names counted as one), or a host the upstream declares it mirrors.
 * Cache entries belong to upstreams, so a narrowed target never reaches another host's content.
 */

/** The canonical registry hosts an upstream serves. */
export function hostsServedBy(upstream: Pick<PullUpstream, 'mirrorHosts' | 'descriptor'>): Set<string> {
  const hosts = new Set(upstream.mirrorHosts);
  const own = registryHostOfUrl(upstream.descriptor.url);
  if (own) hosts.add(own);
  return hosts;
}

/**
 * The target with only the upstreams serving `ns`; without `ns` the target as it is. A malformed `ns`,
 * or one no upstream serves, is NAME_UNKNOWN (404): no upstream is asked.
 */
export function narrowToNamespace(target: PullTarget, ns: string | undefined): PullTarget {
  if (ns === undefined) return target;
  const host = canonicalRegistryHost(ns);
  const upstreams = host ? target.upstreams.filter((u) => hostsServedBy(u).has(host)) : [];
  if (upstreams.length === 0) {
    throw new OciError(OciErrorCode.NAME_UNKNOWN, 'no upstream of this registry serves the requested registry host', {
      detail: { ns: String(ns).slice(0, 255) },
    });
  }
  return upstreams.length === target.upstreams.length ? target : { ...target, upstreams };
}
