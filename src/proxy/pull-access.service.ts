import { Inject, Injectable } from '@nestjs/common';
import { GroupPermission } from '../auth/actor.js';
import { GroupAccessPolicy } from '../auth/group-access.policy.js';
import { RegistryAuthError, RegistryTokenService, challengeHeader } from '../auth/registry-token.service.js';
import { OciError, OciErrorCode, type RepositoryName } from '../oci/index.js';
import type { PullTarget } from './pull-target.js';
import { PullTargetResolver } from './pull-target.resolver.js';

/** A 401 on a pull route: carries the challenge telling the client where to get a token. */
export class PullUnauthorizedError extends OciError {
  constructor(
    message: string,
    readonly challenge: string,
  ) {
    super(OciErrorCode.UNAUTHORIZED, message);
  }
}

/**
 * Who may pull what: the registry JWT must be valid and cover this registry and repository, its
 * credential must still work, and the actor must have PULL on the registry's group. A registry the
 * actor cannot pull from and one that does not exist answer alike (404 NAME_UNKNOWN).
 */
@Injectable()
export class PullAccessService {
  constructor(
    private readonly tokens: RegistryTokenService,
    private readonly policy: GroupAccessPolicy,
    @Inject(PullTargetResolver) private readonly targets: PullTargetResolver,
  ) {}

  async authorize(authorization: string | undefined, registryId: number, name: RepositoryName, baseUrl: string): Promise<PullTarget> {
    const scope = `repository:virtual_registries/containers/${registryId}/${name.value}:pull`;
    let actor;
    try {
      actor = await this.tokens.verifyPullToken(authorization, registryId, name.value);
    } catch (err) {
      if (!(err instanceof RegistryAuthError)) throw err;
      if (err.kind === 'denied') throw new OciError(OciErrorCode.DENIED, 'requested access to the resource is denied');
      const error = authorization ? 'invalid_token' : undefined;
      throw new PullUnauthorizedError(err.message, challengeHeader(baseUrl, scope, error));
    }
    const target = await this.targets.resolve(registryId);
    if (!target || !(await this.policy.can(actor, target.groupId, GroupPermission.PULL))) {
      throw new OciError(OciErrorCode.NAME_UNKNOWN, 'repository name not known to registry');
    }
    return target;
  }
}
