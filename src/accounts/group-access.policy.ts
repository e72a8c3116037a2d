import { ForbiddenException, Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { Member } from './member.entity.js';
import { AccessLevel, Actor, GroupPermission, TokenScope } from './actor.js';

/** The lowest membership role that holds each permission. */
export const MINIMUM_ACCESS_LEVEL: Readonly<Record<GroupPermission, AccessLevel>> = {
  [GroupPermission.PULL]: AccessLevel.GUEST,
  [GroupPermission.READ]: AccessLevel.REPORTER,
  [GroupPermission.WRITE]: AccessLevel.MAINTAINER,
  [GroupPermission.SETTINGS]: AccessLevel.OWNER,
};

/** The scope the credential must carry for each permission (pulls are not admin API calls, and vice versa). */
export const REQUIRED_SCOPE: Readonly<Record<GroupPermission, TokenScope>> = {
  [GroupPermission.PULL]: TokenScope.READ_VIRTUAL_REGISTRY,
  [GroupPermission.READ]: TokenScope.API,
  [GroupPermission.WRITE]: TokenScope.API,
  [GroupPermission.SETTINGS]: TokenScope.API,
};

const groupNotFound = () => new NotFoundException({ message: '404 Group Not Found' });

/**
 * - `allow`: go ahead;
 * - `forbidden`: the actor may see the group (a member, an admin, the group's deploy token) but lacks
 *   the role or the credential's scope;
 * - `hidden`: the actor may not even know the group exists.
 */
export type GroupAccessDecision = 'allow' | 'forbidden' | 'hidden';

const GROUP_ID_MAX = 2_147_483_647;

/**
 * Who may do what on a group. Instance admins may do everything (with the right token scope); users by
 * their membership role (pull = guest+, read = reporter+, write = maintainer+, settings = owner); deploy
 * tokens only pull, and only from their own group. Memberships are read on every call, so removing a
 * member takes effect at once.
 */
@Injectable()
export class GroupAccessPolicy {
  constructor(@InjectRepository(Member) private readonly members: Repository<Member>) {}

  async can(actor: Actor, groupId: number, permission: GroupPermission): Promise<boolean> {
    return (await this.decide(actor, groupId, permission)) === 'allow';
  }

  /**
   * Throws `notFound()` (by default `404 Group Not Found`) when the actor may not see the group: the
   * caller passes the 404 of the resource it looked up, so a resource of a hidden group answers exactly
   * like one that does not exist. ForbiddenException (`403 Forbidden`) when the actor may see the group
   * but lacks the permission.
   */
  async assert(actor: Actor, groupId: number, permission: GroupPermission, notFound: () => Error = groupNotFound): Promise<void> {
    const decision = await this.decide(actor, groupId, permission);
    if (decision === 'hidden') throw notFound();
    if (decision === 'forbidden') throw new ForbiddenException({ message: '403 Forbidden' });
  }

  async decide(actor: Actor, groupId: number, permission: GroupPermission): Promise<GroupAccessDecision> {
    if (!Number.isSafeInteger(groupId) || groupId < 1 || groupId > GROUP_ID_MAX) return 'hidden';
    const hasScope = actor.scopes.includes(REQUIRED_SCOPE[permission]);
    if (actor.kind === 'deploy_token') {
      if (actor.groupId !== groupId) return 'hidden';
      return permission === GroupPermission.PULL && hasScope ? 'allow' : 'forbidden';
    }
    if (actor.admin) return hasScope ? 'allow' : 'forbidden';
    const member = await this.members.findOne({ select: { accessLevel: true }, where: { groupId, userId: actor.userId } });
    if (!member) return 'hidden';
    return hasScope && member.accessLevel >= MINIMUM_ACCESS_LEVEL[permission] ? 'allow' : 'forbidden';
  }
}
