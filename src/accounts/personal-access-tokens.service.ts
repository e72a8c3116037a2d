import { Inject, Injectable, NotFoundException, UnauthorizedException } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { TokenScope, UserActor } from './actor.js';
import { assertInstanceAdmin } from './instance-admin.policy.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { Page, PageQueryDto } from '../common/pagination.js';
import { PersonalAccessTokenCreateDto, PersonalAccessTokenRotateDto } from './personal-access-token.dto.js';
import { PersonalAccessToken } from './personal-access-token.entity.js';
import { generateTokenSecret, PERSONAL_ACCESS_TOKEN_PREFIX, tokenDigest } from './token-secret.js';
import { utcToday } from './token-validity.js';
import { User } from './user.entity.js';
import { userNotFound } from './users.service.js';

/** A token just created: the row and its secret, which is never stored nor shown again. */
export interface CreatedPersonalAccessToken {
  token: PersonalAccessToken;
  secret: string;
}

export interface NewPersonalAccessToken {
  name: string;
  scopes: TokenScope[];
  expiresAt: string | null;
}

const tokenNotFound = () => new NotFoundException({ message: '404 Personal Access Token Not Found' });

function futureDate(expiresAt: string | undefined): string | null {
  if (expiresAt === undefined) return null;
  if (expiresAt <= utcToday()) throw new InvalidFieldException('expires_at', 'must be a date in the future');
  return expiresAt;
}

/**
 * Personal access tokens: a user creates, lists, rotates and revokes its own; an instance admin also
 * creates them for any user and revokes anyone's. Secrets are random (`cvrpat-` + 32 bytes), returned
 * once, stored as SHA-256. Every change tells the InvalidationBus once it is stored (a revoked token
 * is refused from the next pull on, on every replica).
 */
@Injectable()
export class PersonalAccessTokensService {
  constructor(
    @InjectRepository(PersonalAccessToken) private readonly tokens: Repository<PersonalAccessToken>,
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  async createFor(actor: UserActor, userId: number, dto: PersonalAccessTokenCreateDto): Promise<CreatedPersonalAccessToken> {
    assertInstanceAdmin(actor);
    if (!(await this.dataSource.manager.existsBy(User, { id: userId }))) throw userNotFound();
    return this.create(userId, dto);
  }

  async createOwn(actor: UserActor, dto: PersonalAccessTokenCreateDto): Promise<CreatedPersonalAccessToken> {
    return this.create(actor.userId, dto);
  }

  async listOwn(actor: UserActor, query: PageQueryDto): Promise<Page<PersonalAccessToken>> {
    const { page, perPage, skip } = Page.request(query);
    const [items, total] = await this.tokens.findAndCount({ where: { userId: actor.userId }, order: { id: 'ASC' }, skip, take: perPage });
    return new Page(items, total, page, perPage);
  }

  /** The caller's own token, or any token for an admin; others look absent. Revoking twice is harmless. */
  async revoke(actor: UserActor, id: number): Promise<void> {
    const token = await this.tokens.findOneBy({ id });
    if (!token || (token.userId !== actor.userId && !actor.admin)) throw tokenNotFound();
    if (token.revoked) return;
    await this.tokens.update({ id }, { revoked: true });
    this.bus.changed(`personal access token ${id} revoked`);
  }

  /**
   * Replaces the token of this request: the old one is revoked and a new one with the same name and
   * scopes is returned (with the old expiry unless a new one is given). Two concurrent rotations of one
   * token cannot both succeed.
   */
  async rotateSelf(actor: UserActor, dto: PersonalAccessTokenRotateDto): Promise<CreatedPersonalAccessToken> {
    const expiresAt = dto.expires_at === undefined ? undefined : futureDate(dto.expires_at);
    const rotated = await this.dataSource.transaction(async (manager) => {
      const revoked: [PersonalAccessToken[], number] = await manager.query(
        `UPDATE personal_access_tokens SET revoked = true, updated_at = now()
          WHERE id = $1 AND user_id = $2 AND revoked = false
          RETURNING name, scopes, to_char(expires_at, 'YYYY-MM-DD') AS "expiresAt"`,
        [actor.tokenId, actor.userId],
      );
      const old = revoked[0][0];
      if (!old) throw new UnauthorizedException({ message: '401 Unauthorized' });
      return this.insert(manager, actor.userId, { name: old.name, scopes: old.scopes, expiresAt: expiresAt ?? old.expiresAt });
    });
    this.bus.changed(`personal access token ${actor.tokenId} rotated`);
    return rotated;
  }

  /** For the bootstrap: a token whose secret is given (INITIAL_ADMIN_TOKEN) instead of generated. */
  async insertWithSecret(manager: EntityManager, userId: number, token: NewPersonalAccessToken, secret: string): Promise<PersonalAccessToken> {
    const row = manager.create(PersonalAccessToken, { userId, ...token, revoked: false, lastUsedAt: null, tokenDigest: tokenDigest(secret) });
    const saved = await manager.save(row);
    delete (saved as Partial<PersonalAccessToken>).tokenDigest;
    return saved;
  }

  private async create(userId: number, dto: PersonalAccessTokenCreateDto): Promise<CreatedPersonalAccessToken> {
    const created = await this.insert(this.dataSource.manager, userId, { name: dto.name, scopes: dto.scopes, expiresAt: futureDate(dto.expires_at) });
    this.bus.changed(`personal access token ${created.token.id} created`);
    return created;
  }

  private async insert(manager: EntityManager, userId: number, token: NewPersonalAccessToken): Promise<CreatedPersonalAccessToken> {
    const secret = generateTokenSecret(PERSONAL_ACCESS_TOKEN_PREFIX);
    return { token: await this.insertWithSecret(manager, userId, token, secret), secret };
  }
}
