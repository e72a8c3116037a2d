import { Inject, Injectable, NotFoundException } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import { Actor, GroupPermission } from './actor.js';
import { GroupAccessPolicy } from './group-access.policy.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { DeployTokenCreateDto } from './deploy-token.dto.js';
import { DeployToken } from './deploy-token.entity.js';
import { Group } from './group.entity.js';
import { groupNotFound } from './groups.service.js';
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { Page, PageQueryDto } from '../common/pagination.js';
import { DEPLOY_TOKEN_PREFIX, generateTokenSecret, tokenDigest } from './token-secret.js';

export interface CreatedDeployToken {
  token: DeployToken;
  secret: string;
}

const deployTokenNotFound = () => new NotFoundException({ message: '404 Deploy Token Not Found' });

/**
 * Group deploy tokens (group settings: owner, or an admin). They log in with their username and
 * secret and can only pull from their group's registries. Deleting one revokes it (the row stays, listed
 * as revoked). Every change tells the InvalidationBus once it is stored, so pulls see it at once.
 */
@Injectable()
export class DeployTokensService {
  constructor(
    @InjectRepository(DeployToken) private readonly tokens: Repository<DeployToken>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly policy: GroupAccessPolicy,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  async list(actor: Actor, groupId: number, query: PageQueryDto): Promise<Page<DeployToken>> {
    await this.assertSettings(actor, groupId);
    const { page, perPage, skip } = Page.request(query);
    const [items, total] = await this.tokens.findAndCount({ where: { groupId }, order: { id: 'ASC' }, skip, take: perPage });
    return new Page(items, total, page, perPage);
  }

  async create(actor: Actor, groupId: number, dto: DeployTokenCreateDto): Promise<CreatedDeployToken> {
    await this.assertSettings(actor, groupId);
    const expiresAt = dto.expires_at === undefined ? null : new Date(dto.expires_at);
    if (expiresAt && expiresAt.getTime() <= Date.now()) throw new InvalidFieldException('expires_at', 'must be in the future');
    const secret = generateTokenSecret(DEPLOY_TOKEN_PREFIX);
    // The default username names the id: take the id from the sequence and insert in one statement.
    const [{ id }] = (await this.tokens.query(
      `WITH next AS (SELECT nextval(pg_get_serial_sequence('deploy_tokens', 'id'))::int AS id)
       INSERT INTO deploy_tokens (id, group_id, name, username, scopes, expires_at, token_digest)
       SELECT next.id, $1, $2, COALESCE($3, 'gitlab+deploy-token-' || next.id), $4::text[], $5, $6 FROM next
       RETURNING id`,
      [groupId, dto.name, dto.username ?? null, dto.scopes, expiresAt, tokenDigest(secret)],
    )) as { id: number }[];
    const token = (await this.tokens.findOneBy({ id }))!;
    this.bus.changed(`deploy token ${id} created`);
    return { token, secret };
  }

  async find(actor: Actor, groupId: number, id: number): Promise<DeployToken> {
    await this.assertSettings(actor, groupId);
    const token = await this.tokens.findOneBy({ id, groupId });
    if (!token) throw deployTokenNotFound();
    return token;
  }

  async revoke(actor: Actor, groupId: number, id: number): Promise<void> {
    const token = await this.find(actor, groupId, id);
    if (token.revoked) return;
    await this.tokens.update({ id }, { revoked: true });
    this.bus.changed(`deploy token ${id} revoked`);
  }

  private async assertSettings(actor: Actor, groupId: number): Promise<void> {
    await this.policy.assert(actor, groupId, GroupPermission.SETTINGS);
    if (!(await this.dataSource.manager.existsBy(Group, { id: groupId }))) throw groupNotFound();
  }
}
