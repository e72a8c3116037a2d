import { Inject, Injectable } from '@nestjs/common';
import { GroupPermission } from '../accounts/actor.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { RegistryAuthError, RegistryTokenService, challengeHeader } from '../auth/registry-token.service.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { InvalidatedLru } from '../invalidation/invalidated-lru.js';
import { MetricsService } from '../observability/metrics.service.js';
import { OciError, OciErrorCode, type RepositoryName } from '../oci/index.js';
import type { PullTarget } from '../upstreams/pull-target.js';
import { UpstreamsService } from '../upstreams/upstreams.service.js';

/** A 401 on a pull route: carries the challenge telling the client where to get a token. */
export class PullUnauthorizedError extends OciError {
  constructor(
    message: string,
    readonly challenge: string,
  ) {
    super(OciErrorCode.UNAUTHORIZED, message);
  }
}

/** Pull decisions remembered per replica: one per (token, registry, repository) a client is pulling with. */
const REMEMBERED_DECISIONS = 10_000;

/**
 * Who may pull what: the registry JWT must be valid and cover this registry and repository, its
 * credential must still work, and the actor must have PULL on the registry's group. A registry the
 * actor cannot pull from and one that does not exist answer alike (404 NAME_UNKNOWN).
 *
 * A granted pull is remembered for MEMORY_CACHE_TTL_MS (never past the token's expiry), so a client
 * pulling an image's manifests and layers pays for the signature check and the three reads (credential,
 * registry with its upstreams, membership) once. Every committed change to tokens, users, members,
 * groups, registries or upstreams forgets all of it at once (the services tell the InvalidationBus): a
 * revoked token, a removed member or a re-pointed upstream counts from the next request on. Refusals are
 * never remembered.
 */
@Injectable()
export class PullAccessService {
  private readonly granted?: InvalidatedLru<PullTarget>;
  private readonly counted: { hit: { inc(): void }; miss: { inc(): void } };

  constructor(
    private readonly tokens: RegistryTokenService,
    private readonly policy: GroupAccessPolicy,
    @Inject(UpstreamsService) private readonly targets: UpstreamsService,
    @Inject(limitsConfig.KEY) limits: LimitsConfig,
    @Inject(INVALIDATION_BUS) bus: InvalidationBus,
    metrics: MetricsService,
  ) {
    this.counted = {
      hit: metrics.memoryCacheRequests.labels({ cache: 'authorization', result: 'hit' }),
      miss: metrics.memoryCacheRequests.labels({ cache: 'authorization', result: 'miss' }),
    };
    if (limits.memoryCacheTtlMs > 0) {
      this.granted = new InvalidatedLru<PullTarget>(bus, { ttlMs: limits.memoryCacheTtlMs, max: REMEMBERED_DECISIONS });
    }
  }

  /** `baseUrl` (for the challenge of a 401) is only asked for when the pull is refused. */
  async authorize(authorization: string | undefined, registryId: number, name: RepositoryName, baseUrl: () => string): Promise<PullTarget> {
    const key = authorization ? `${registryId} ${name.value} ${authorization}` : undefined;
    if (key && this.granted) {
      const remembered = this.granted.get(key);
      (remembered ? this.counted.hit : this.counted.miss).inc();
      if (remembered) return remembered;
    }

    const generation = this.granted?.generation ?? 0;
    const scope = `repository:virtual_registries/containers/${registryId}/${name.value}:pull`;
    let grant;
    try {
      grant = await this.tokens.verifyPullGrant(authorization, registryId, name.value);
    } catch (err) {
      if (!(err instanceof RegistryAuthError)) throw err;
      if (err.kind === 'denied') throw new OciError(OciErrorCode.DENIED, 'requested access to the resource is denied');
      const error = authorization ? 'invalid_token' : undefined;
      throw new PullUnauthorizedError(err.message, challengeHeader(baseUrl(), scope, error));
    }
    const target = await this.targets.pullTargetOf(registryId);
    if (!target || !(await this.policy.can(grant.actor, target.groupId, GroupPermission.PULL))) {
      throw new OciError(OciErrorCode.NAME_UNKNOWN, 'repository name not known to registry');
    }
    if (key) this.granted?.set(key, target, generation, grant.expiresAt - Date.now());
    return target;
  }
}
