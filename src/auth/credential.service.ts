import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { DeployToken } from '../accounts/deploy-token.entity.js';
import { PersonalAccessToken } from '../accounts/personal-access-token.entity.js';
import { DEPLOY_TOKEN_PREFIX, tokenDigest } from '../accounts/token-secret.js';
import { deployTokenUsable, personalAccessTokenUsable } from '../accounts/token-validity.js';
import { UserState } from '../accounts/user.entity.js';
import { Actor, DeployTokenActor, UserActor } from '../accounts/actor.js';
import { RecentCredentials, type CredentialKey } from './recent-credentials.js';

/** What a registry JWT remembers about the credential it was minted from (re-checked on every use). */
export type CredentialReference = { type: 'personal_access_token'; id: number } | { type: 'deploy_token'; id: number };

/**
 * Generated secrets are 49-50 characters; the bootstrap token (INITIAL_ADMIN_TOKEN) may be any string of
 * at least 20 characters, so personal access tokens are not required to carry the `cvrpat-` prefix.
 */
const MIN_SECRET_LENGTH = 20;
const MAX_SECRET_LENGTH = 1024;

/** last_used_at is written at most this often per token (GitLab does the same), not on every request. */
const LAST_USED_RESOLUTION_MS = 10 * 60 * 1000;

/**
 * Turns a secret (personal access token or deploy token) into an Actor, or null when it is unknown,
 * revoked, expired, or its user is blocked. A working credential's actor is remembered for
 * MEMORY_CACHE_TTL_MS (RecentCredentials); every change to tokens or users forgets it before the change's
 * response leaves, so a revocation or a block takes effect on the very next request of this replica.
 * Refusals always read the database.
 */
@Injectable()
export class CredentialService {
  constructor(
    @InjectRepository(PersonalAccessToken) private readonly personalAccessTokens: Repository<PersonalAccessToken>,
    @InjectRepository(DeployToken) private readonly deployTokens: Repository<DeployToken>,
    private readonly recent: RecentCredentials,
  ) {}

  /** A personal access token, as sent in `PRIVATE-TOKEN` or `Authorization: Bearer`. */
  async authenticatePersonalAccessToken(secret: string): Promise<UserActor | null> {
    if (secret.length < MIN_SECRET_LENGTH || secret.length > MAX_SECRET_LENGTH || secret.startsWith(DEPLOY_TOKEN_PREFIX)) return null;
    const key: CredentialKey = { by: 'secret', kind: 'personal_access_token', digest: tokenDigest(secret) };
    const remembered = this.recent.get(key);
    if (remembered) return remembered as UserActor;
    const generation = this.recent.generation;
    // find, not findOne: with a relation, findOne's LIMIT costs a second query (TypeORM's DISTINCT paging).
    const [token] = await this.personalAccessTokens.find({ where: { tokenDigest: key.digest }, relations: { user: true } });
    const actor = token ? this.userActor(token) : null;
    if (!actor) return null;
    await this.touch(this.personalAccessTokens, token);
    this.recent.remember(key, actor, generation, personalAccessTokenExpiry(token));
    return actor;
  }

  /**
   * HTTP Basic login of a registry client: the username with a personal access token of that user, or
   * a deploy token with its own username. Usernames compare case-insensitively, as in GitLab.
   */
  async authenticateLogin(username: string, secret: string): Promise<Actor | null> {
    if (secret.startsWith(DEPLOY_TOKEN_PREFIX)) {
      const actor = await this.authenticateDeployToken(secret);
      return actor && actor.username.toLowerCase() === username.toLowerCase() ? actor : null;
    }
    const actor = await this.authenticatePersonalAccessToken(secret);
    if (!actor || actor.username.toLowerCase() !== username.toLowerCase()) return null;
    return actor;
  }

  /** The actor behind a credential a registry JWT names, if that credential still works. */
  async resolve(reference: CredentialReference): Promise<Actor | null> {
    if (!Number.isSafeInteger(reference.id) || reference.id < 1 || reference.id > 2_147_483_647) return null;
    const key: CredentialKey = { by: 'id', kind: reference.type, id: reference.id };
    const remembered = this.recent.get(key);
    if (remembered) return remembered;
    const generation = this.recent.generation;
    if (reference.type === 'deploy_token') {
      const token = await this.deployTokens.findOne({ where: { id: reference.id } });
      const actor = token ? this.deployTokenActor(token) : null;
      if (actor) this.recent.remember(key, actor, generation, token!.expiresAt);
      return actor;
    }
    const [token] = await this.personalAccessTokens.find({ where: { id: reference.id }, relations: { user: true } });
    const actor = token ? this.userActor(token) : null;
    if (actor) this.recent.remember(key, actor, generation, personalAccessTokenExpiry(token));
    return actor;
  }

  /** A deploy token's secret (its username is checked by the caller). */
  private async authenticateDeployToken(secret: string): Promise<DeployTokenActor | null> {
    const key: CredentialKey = { by: 'secret', kind: 'deploy_token', digest: tokenDigest(secret) };
    const remembered = this.recent.get(key);
    if (remembered) return remembered as DeployTokenActor;
    const generation = this.recent.generation;
    const token = await this.deployTokens.findOne({ where: { tokenDigest: key.digest } });
    const actor = token ? this.deployTokenActor(token) : null;
    if (!actor) return null;
    await this.touch(this.deployTokens, token!);
    this.recent.remember(key, actor, generation, token!.expiresAt);
    return actor;
  }

  private userActor(token: PersonalAccessToken): UserActor | null {
    const user = token.user;
    if (!user || user.state !== UserState.ACTIVE || !personalAccessTokenUsable(token)) return null;
    return {
      kind: 'user',
      userId: user.id,
      username: user.username,
      admin: user.admin,
      scopes: [...token.scopes],
      tokenId: token.id,
    };
  }

  private deployTokenActor(token: DeployToken): DeployTokenActor | null {
    if (!deployTokenUsable(token)) return null;
    return {
      kind: 'deploy_token',
      deployTokenId: token.id,
      groupId: token.groupId,
      username: token.username,
      admin: false,
      scopes: [...token.scopes],
      tokenId: token.id,
    };
  }

  /** Records the use (without bumping updated_at, which tracks changes to the token itself). */
  private async touch(repository: Repository<PersonalAccessToken> | Repository<DeployToken>, token: { id: number; lastUsedAt: Date | null }): Promise<void> {
    if (token.lastUsedAt && Date.now() - token.lastUsedAt.getTime() < LAST_USED_RESOLUTION_MS) return;
    await repository.query(`UPDATE ${repository.metadata.tableName} SET last_used_at = now() WHERE id = $1`, [token.id]);
  }
}

/** The moment a personal access token stops working: the start (UTC) of its expiry date. */
function personalAccessTokenExpiry(token: Pick<PersonalAccessToken, 'expiresAt'>): Date | null {
  return token.expiresAt === null ? null : new Date(`${token.expiresAt}T00:00:00Z`);
}
