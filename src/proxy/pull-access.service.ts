import { Inject, Injectable } from '@nestjs/common';
import { GroupPermission } from '../accounts/actor.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { pullScope } from '../auth/registry-scope.js';
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

/** How a pull addresses its registry: the prefixed `/v2/virtual_registries/...` routes, or a mirror route. */
export interface PullAddress {
  /**
   * A mirror route (`/virtual_registries/containers/<id>/v2/...`, the root `/v2/<name>`): its challenge's
   * realm names the registry, so a client asking for the image's own name gets this registry's scope.
   */
  mirror?: boolean;
}

/** Pull decisions remembered per replica: one per (token, registry, repository) a client is pulling with. */
const REMEMBERED_DECISIONS = 10_000;

/**
 * Who may pull what: the registry JWT must be valid and cover this registry and repository, its
 * credential must still work, and the actor must have PULL on the registry's group. A registry the
 * actor cannot pull from and one that does not exist answer alike (404 NAME_UNKNOWN). A registry that
 * allows anonymous pulls also takes requests without credentials, and anonymous tokens covering it.
 *
 * A granted pull is remembered for MEMORY_CACHE_TTL_MS (never past the token's expiry), so a client
 * pulling an image's manifests and layers pays for the signature check and the three reads (credential,
 * registry with its upstreams, membership) once; the registry with its upstreams is also remembered by
 * id, and the credential by RecentCredentials, so the next token of the same client (a new pull) costs
 * a signature check and at most a membership read. Every committed change to tokens, users, members,
 * groups, registries or upstreams forgets all of it at once (the services tell the InvalidationBus): a
 * revoked token, a removed member or a re-pointed upstream counts from the next request on. Refusals are
 * never remembered.
 */
@Injectable()
export class PullAccessService {
  private readonly granted?: InvalidatedLru<GrantedPull>;
  /** Registries with their upstreams, by id: a new token's first pull reads no registry row either. */
  private readonly registries?: InvalidatedLru<PullTarget>;

  constructor(
    private readonly tokens: RegistryTokenService,
    private readonly policy: GroupAccessPolicy,
    @Inject(UpstreamsService) private readonly targets: UpstreamsService,
    @Inject(limitsConfig.KEY) limits: LimitsConfig,
    @Inject(INVALIDATION_BUS) bus: InvalidationBus,
    metrics: MetricsService,
  ) {
    if (limits.memoryCacheTtlMs > 0) {
      const ttlMs = limits.memoryCacheTtlMs;
      this.granted = new InvalidatedLru<GrantedPull>(bus, { ttlMs, max: REMEMBERED_DECISIONS, counts: metrics.memoryCacheCounts('authorization') });
      this.registries = new InvalidatedLru<PullTarget>(bus, { ttlMs, max: REMEMBERED_DECISIONS, counts: metrics.memoryCacheCounts('registry') });
    }
  }

  /** `baseUrl` (for the challenge of a 401) is only asked for when the pull is refused. */
  async authorize(
    authorization: string | undefined,
    registryId: number,
    name: RepositoryName,
    baseUrl: () => string,
    address: PullAddress = {},
  ): Promise<PullTarget> {
    const remembered = this.remembered(authorization, registryId, name);
    if (remembered) return remembered;

    const credential = authorization ?? '';
    const key = decisionKey(registryId, name.value, credential);
    const generation = this.granted?.generation ?? 0;
    const scope = pullScope(registryId, name.value);
    const unauthorized = (err: RegistryAuthError) =>
      new PullUnauthorizedError(
        err.message,
        challengeHeader(baseUrl(), scope, authorization ? 'invalid_token' : undefined, address.mirror ? registryId : undefined),
      );
    if (!authorization) {
      // no credentials at all: only a registry that allows anonymous pulls answers
      const target = await this.targetOf(registryId);
      if (!target?.anonymousPull) throw unauthorized(new RegistryAuthError('unauthorized', 'authentication required'));
      this.granted?.set(key, { authorization: credential, target }, generation);
      return target;
    }
    let grant;
    try {
      grant = await this.tokens.verifyPullGrant(authorization, registryId, name.value);
    } catch (err) {
      if (!(err instanceof RegistryAuthError)) throw err;
      if (err.kind === 'denied') throw new OciError(OciErrorCode.DENIED, 'requested access to the resource is denied');
      throw unauthorized(err);
    }
    const target = await this.targetOf(registryId);
    const allowed = target && (grant.actor ? await this.policy.can(grant.actor, target.groupId, GroupPermission.PULL) : target.anonymousPull);
    if (!target || !allowed) {
      throw new OciError(OciErrorCode.NAME_UNKNOWN, 'repository name not known to registry');
    }
    this.granted?.set(key, { authorization: credential, target }, generation, grant.expiresAt - Date.now());
    return target;
  }

  /**
   * The registry and its upstreams of a pull this replica granted to this credential moments ago, if that
   * decision still stands (authorize()'s first step: no signature check, no reads); undefined otherwise.
   * `counted` false: see InvalidatedLru.get (countRemembered() counts it once used).
   */
  remembered(authorization: string | undefined, registryId: number, name: RepositoryName, counted = true): PullTarget | undefined {
    const credential = authorization ?? '';
    const remembered = this.granted?.get(decisionKey(registryId, name.value, credential), counted);
    return remembered?.authorization === credential ? remembered.target : undefined;
  }

  countRemembered(): void {
    this.granted?.countHit();
  }

  /** The registry and its upstreams in order (remembered like the decisions; absent registries are not). */
  private async targetOf(registryId: number): Promise<PullTarget | undefined> {
    if (!this.registries) return this.targets.pullTargetOf(registryId);
    const key = String(registryId);
    const remembered = this.registries.get(key);
    if (remembered) return remembered;
    const generation = this.registries.generation;
    const target = await this.targets.pullTargetOf(registryId);
    if (target) this.registries.set(key, target, generation);
    return target;
  }
}

/** A pull allowed for one credential (the whole Authorization header). */
interface GrantedPull {
  authorization: string;
  target: PullTarget;
}

/**
 * The key a decision is remembered under: the registry, the repository and the credential's last 48
 * characters (a JWT's signature, a Basic credential's tail). A lookup keyed by a whole ~700-character
 * token hashes it on every request (about 2 us, 5 % of a cached manifest GET); the whole credential is
 * compared on a hit instead, so another one with the same tail never shares a decision.
 */
function decisionKey(registryId: number, name: string, credential: string): string {
  return `${registryId} ${name} ${credential.length > CREDENTIAL_TAIL ? credential.slice(-CREDENTIAL_TAIL) : credential}`;
}

const CREDENTIAL_TAIL = 48;
