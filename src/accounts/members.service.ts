import { BadRequestException, ConflictException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { AccessLevel, Actor, GroupPermission } from './actor.js';
import { GroupAccessPolicy } from './group-access.policy.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { Group } from './group.entity.js';
import { groupNotFound } from './groups.service.js';
import { isUniqueViolation } from '../common/invalid-field.exception.js';
import { MemberCreateDto, MemberUpdateDto } from './member.dto.js';
import { Member } from './member.entity.js';
import { Page, PageQueryDto } from '../common/pagination.js';
import { User } from './user.entity.js';
import { userNotFound } from './users.service.js';

const memberNotFound = () => new NotFoundException({ message: '404 Member Not Found' });
const lastOwner = () => new BadRequestException({ message: 'A group must keep at least one owner' });

/**
 * Group memberships. Listing needs reporter+, changes need owner (GitLab: members are group settings).
 * The last owner of a group cannot be removed or demoted. Every change tells the InvalidationBus once
 * it is committed, so a pull decision remembered before it is not used after it.
 */
@Injectable()
export class MembersService {
  constructor(
    @InjectRepository(Member) private readonly members: Repository<Member>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly policy: GroupAccessPolicy,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  async list(actor: Actor, groupId: number, query: PageQueryDto): Promise<Page<Member>> {
    await this.policy.assert(actor, groupId, GroupPermission.READ);
    await this.groupExists(this.dataSource.manager, groupId);
    const { page, perPage, skip } = Page.request(query);
    const [items, total] = await this.members.findAndCount({
      where: { groupId },
      relations: { user: true },
      order: { userId: 'ASC' },
      skip,
      take: perPage,
    });
    return new Page(items, total, page, perPage);
  }

  async add(actor: Actor, groupId: number, dto: MemberCreateDto): Promise<Member> {
    await this.policy.assert(actor, groupId, GroupPermission.SETTINGS);
    await this.groupExists(this.dataSource.manager, groupId);
    const user = await this.dataSource.manager.findOneBy(User, { id: dto.user_id });
    if (!user) throw userNotFound();
    const exists = () => new ConflictException({ message: 'Member already exists' });
    if (await this.members.existsBy({ groupId, userId: user.id })) throw exists();
    try {
      const member = await this.members.save(this.members.create({ groupId, userId: user.id, accessLevel: dto.access_level }));
      this.bus.changed(`member ${user.id} added to group ${groupId}`);
      return { ...member, user };
    } catch (err) {
      if (isUniqueViolation(err)) throw exists();
      throw err;
    }
  }

  async update(actor: Actor, groupId: number, userId: number, dto: MemberUpdateDto): Promise<Member> {
    await this.policy.assert(actor, groupId, GroupPermission.SETTINGS);
    const updated = await this.dataSource.transaction(async (manager) => {
      const member = await this.lockedMember(manager, groupId, userId);
      if (member.accessLevel === AccessLevel.OWNER && dto.access_level < AccessLevel.OWNER) await this.keepAnOwner(manager, groupId);
      await manager.update(Member, { id: member.id }, { accessLevel: dto.access_level });
      return (await manager.findOne(Member, { where: { id: member.id }, relations: { user: true } }))!;
    });
    this.bus.changed(`member ${userId} of group ${groupId} changed`);
    return updated;
  }

  async remove(actor: Actor, groupId: number, userId: number): Promise<void> {
    await this.policy.assert(actor, groupId, GroupPermission.SETTINGS);
    await this.dataSource.transaction(async (manager) => {
      const member = await this.lockedMember(manager, groupId, userId);
      if (member.accessLevel === AccessLevel.OWNER) await this.keepAnOwner(manager, groupId);
      await manager.delete(Member, { id: member.id });
    });
    this.bus.changed(`member ${userId} removed from group ${groupId}`);
  }

  /** Locks the group row, so concurrent changes to its owners are serialised. */
  private async lockedMember(manager: EntityManager, groupId: number, userId: number): Promise<Member> {
    const locked: unknown[] = await manager.query(`SELECT id FROM groups WHERE id = $1 FOR UPDATE`, [groupId]);
    if (!locked.length) throw groupNotFound();
    const member = await manager.findOneBy(Member, { groupId, userId });
    if (!member) throw memberNotFound();
    return member;
  }

  private async keepAnOwner(manager: EntityManager, groupId: number): Promise<void> {
    const owners = await manager.countBy(Member, { groupId, accessLevel: AccessLevel.OWNER });
    if (owners <= 1) throw lastOwner();
  }

  private async groupExists(manager: EntityManager, groupId: number): Promise<void> {
    if (!(await manager.existsBy(Group, { id: groupId }))) throw groupNotFound();
  }
}
