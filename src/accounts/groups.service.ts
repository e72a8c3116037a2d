import { Inject, Injectable, NotFoundException } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import { AccessLevel, Actor, GroupPermission, UserActor } from './actor.js';
import { GroupAccessPolicy } from './group-access.policy.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { GroupCreateDto } from './group.dto.js';
import { Group } from './group.entity.js';
import { InvalidFieldException, isUniqueViolation } from '../common/invalid-field.exception.js';
import { Member } from './member.entity.js';
import { Page, PageQueryDto } from '../common/pagination.js';

export const groupNotFound = () => new NotFoundException({ message: '404 Group Not Found' });

/** Groups (tenants). Anyone with an `api` token may create one and becomes its owner, as in GitLab. */
@Injectable()
export class GroupsService {
  constructor(
    @InjectRepository(Group) private readonly groups: Repository<Group>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly policy: GroupAccessPolicy,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  /** Admins see every group, users the groups they are members of. */
  async list(actor: UserActor, query: PageQueryDto): Promise<Page<Group>> {
    const { page, perPage, skip } = Page.request(query);
    const builder = this.groups.createQueryBuilder('g').orderBy('g.id', 'ASC').skip(skip).take(perPage);
    if (!actor.admin) builder.innerJoin(Member, 'm', 'm.group_id = g.id AND m.user_id = :userId', { userId: actor.userId });
    const [items, total] = await builder.getManyAndCount();
    return new Page(items, total, page, perPage);
  }

  async create(actor: UserActor, dto: GroupCreateDto): Promise<Group> {
    const taken = () => new InvalidFieldException('path', 'has already been taken');
    // Checked first to answer the common case without a failed insert; the unique index settles races.
    if (await this.groups.createQueryBuilder('g').where('lower(g.path) = lower(:path)', { path: dto.path }).getExists()) throw taken();
    try {
      return await this.dataSource.transaction(async (manager) => {
        const group = await manager.save(manager.create(Group, { name: dto.name, path: dto.path }));
        await manager.insert(Member, { groupId: group.id, userId: actor.userId, accessLevel: AccessLevel.OWNER });
        return group;
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw taken();
      throw err;
    }
  }

  /** Reporter+ (or admin). */
  async find(actor: Actor, id: number): Promise<Group> {
    await this.policy.assert(actor, id, GroupPermission.READ);
    return this.existing(id);
  }

  /** Owner (or admin). Registries, upstreams, cache entries, members and deploy tokens go with it. */
  async remove(actor: Actor, id: number): Promise<void> {
    await this.policy.assert(actor, id, GroupPermission.SETTINGS);
    const result = await this.groups.delete({ id });
    if (!result.affected) throw groupNotFound();
    this.bus.changed(`group ${id} deleted`);
  }

  /** The group, or 404 (for callers that already checked the actor's permission). */
  async existing(id: number): Promise<Group> {
    const group = await this.groups.findOneBy({ id });
    if (!group) throw groupNotFound();
    return group;
  }
}
