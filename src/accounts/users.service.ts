import { ConflictException, ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { UserActor } from './actor.js';
import { assertInstanceAdmin } from './instance-admin.policy.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { isUniqueViolation } from '../common/invalid-field.exception.js';
import { Page } from '../common/pagination.js';
import { UserCreateDto, UserListQueryDto } from './user.dto.js';
import { User, UserState } from './user.entity.js';

export const userNotFound = () => new NotFoundException({ message: '404 User Not Found' });

/**
 * Users are managed by instance administrators; everyone may read their own account. Blocking,
 * unblocking and deleting tell the InvalidationBus once stored, so pulls see the change at once.
 */
@Injectable()
export class UsersService {
  constructor(
    @InjectRepository(User) private readonly users: Repository<User>,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  async list(actor: UserActor, query: UserListQueryDto): Promise<Page<User>> {
    assertInstanceAdmin(actor);
    const { page, perPage, skip } = Page.request(query);
    const builder = this.users.createQueryBuilder('u').orderBy('u.id', 'ASC').skip(skip).take(perPage);
    if (query.username) builder.where('lower(u.username) = lower(:username)', { username: query.username });
    const [items, total] = await builder.getManyAndCount();
    return new Page(items, total, page, perPage);
  }

  async create(actor: UserActor, dto: UserCreateDto): Promise<User> {
    assertInstanceAdmin(actor);
    const taken = () => new ConflictException({ message: 'Username has already been taken' });
    // Checked first to answer the common case without a failed insert; the unique index settles races.
    if (await this.users.createQueryBuilder('u').where('lower(u.username) = lower(:username)', { username: dto.username }).getExists()) throw taken();
    try {
      return await this.users.save(this.users.create({ username: dto.username, email: dto.email ?? null, admin: dto.admin ?? false }));
    } catch (err) {
      if (isUniqueViolation(err)) throw taken();
      throw err;
    }
  }

  /** Admins read anyone; users only themselves (others look absent). */
  async find(actor: UserActor, id: number): Promise<User> {
    if (!actor.admin && actor.userId !== id) throw userNotFound();
    return this.existing(id);
  }

  async me(actor: UserActor): Promise<User> {
    return this.existing(actor.userId);
  }

  /** Blocking stops every token of the user at once (admin API and pulls); unblocking restores them. */
  async setState(actor: UserActor, id: number, state: UserState): Promise<User> {
    assertInstanceAdmin(actor);
    if (id === actor.userId && state === UserState.BLOCKED) throw new ForbiddenException({ message: '403 Forbidden - you cannot block yourself' });
    const user = await this.existing(id);
    if (user.state !== state) {
      await this.users.update({ id }, { state });
      this.bus.changed(`user ${id} ${state}`);
    }
    return { ...user, state };
  }

  async remove(actor: UserActor, id: number): Promise<void> {
    assertInstanceAdmin(actor);
    if (id === actor.userId) throw new ForbiddenException({ message: '403 Forbidden - you cannot delete yourself' });
    const result = await this.users.delete({ id });
    if (!result.affected) throw userNotFound();
    this.bus.changed(`user ${id} deleted`);
  }

  async existing(id: number): Promise<User> {
    const user = await this.users.findOneBy({ id });
    if (!user) throw userNotFound();
    return user;
  }
}
