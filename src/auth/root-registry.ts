import type { RootRegistries } from '../config/environment.js';

/**
 * The registry served at the root `/v2/<name>` for a request's Host (MIRROR_HOST_REGISTRIES, the
 * `host:port` form first, then the bare host name), else MIRROR_DEFAULT_REGISTRY; undefined when none is.
 */
export function rootRegistryFor(config: RootRegistries, host: string | undefined): number | undefined {
  const value = (host ?? '').trim().toLowerCase();
  if (value) {
    const exact = config.byHost[value];
    if (exact !== undefined) return exact;
    const name = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(value)?.[1];
    if (name && name !== value && config.byHost[name] !== undefined) return config.byHost[name];
  }
  return config.defaultRegistryId;
}
