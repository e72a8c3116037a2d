import { BadRequestException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { InvalidFieldException, isUniqueViolation } from '../common/invalid-field.exception.js';
import { GroupPermission, type Actor } from '../accounts/actor.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { GroupResolver } from '../accounts/group-resolver.service.js';
import { CLOCK, type Clock } from './clock.js';
import { CleanupPolicy, CleanupPolicyStatus, nextRunAfter } from './cleanup-policy.entity.js';
import type { CleanupPolicyCreateDto, CleanupPolicyUpdateDto } from './cleanup-policy.dto.js';

export const cleanupPolicyNotFound = () => new NotFoundException({ message: '404 Cleanup Policy Not Found' });

/**
 * A group's cleanup policy through the admin API (GitLab's shape). Every verb needs the group's settings
 * permission (owner, or an instance admin). `next_run_at` is set `cadence` days ahead on creation and
 * whenever the cadence changes or the policy is switched on.
 */
@Injectable()
export class CleanupPoliciesService {
  constructor(
    @InjectRepository(CleanupPolicy) private readonly policies: Repository<CleanupPolicy>,
    private readonly groups: GroupResolver,
    private readonly access: GroupAccessPolicy,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async find(actor: Actor, groupRef: string | number): Promise<CleanupPolicy> {
    const groupId = await this.authorizedGroupId(actor, groupRef);
    const policy = await this.policies.findOneBy({ groupId });
    if (!policy) throw cleanupPolicyNotFound();
    return policy;
  }

  async create(actor: Actor, groupRef: string | number, dto: CleanupPolicyCreateDto): Promise<CleanupPolicy> {
    const groupId = await this.authorizedGroupId(actor, groupRef);
    const taken = () => new InvalidFieldException('group', 'has already been taken');
    if (await this.policies.existsBy({ groupId })) throw taken();
    const policy = this.policies.create({
      groupId,
      enabled: dto.enabled ?? false,
      keepNDaysAfterDownload: dto.keep_n_days_after_download ?? 30,
      cadence: dto.cadence ?? 7,
      status: CleanupPolicyStatus.SCHEDULED,
    });
    policy.nextRunAt = nextRunAfter(this.clock.now(), policy.cadence);
    try {
      return await this.policies.save(policy);
    } catch (err) {
      if (isUniqueViolation(err)) throw taken();
      throw err;
    }
  }

  async update(actor: Actor, groupRef: string | number, dto: CleanupPolicyUpdateDto): Promise<CleanupPolicy> {
    if (dto.enabled === undefined && dto.keep_n_days_after_download === undefined && dto.cadence === undefined) {
      throw new BadRequestException({
        message: 'enabled, keep_n_days_after_download, cadence are missing, at least one parameter must be provided',
        error: 'Bad Request',
        statusCode: 400,
      });
    }
    const policy = await this.find(actor, groupRef);
    const changes: Partial<CleanupPolicy> = {};
    if (dto.keep_n_days_after_download !== undefined) changes.keepNDaysAfterDownload = dto.keep_n_days_after_download;
    if (dto.enabled !== undefined) changes.enabled = dto.enabled;
    if (dto.cadence !== undefined) changes.cadence = dto.cadence;
    const rescheduled = (dto.cadence !== undefined && dto.cadence !== policy.cadence) || (dto.enabled === true && !policy.enabled);
    if (rescheduled) changes.nextRunAt = nextRunAfter(this.clock.now(), dto.cadence ?? policy.cadence);
    await this.policies.update({ id: policy.id }, changes);
    return this.policies.findOneByOrFail({ id: policy.id });
  }

  async remove(actor: Actor, groupRef: string | number): Promise<void> {
    const groupId = await this.authorizedGroupId(actor, groupRef);
    const result = await this.policies.delete({ groupId });
    if (!result.affected) throw cleanupPolicyNotFound();
  }

  private async authorizedGroupId(actor: Actor, groupRef: string | number): Promise<number> {
    const group = await this.groups.resolve(groupRef);
    await this.access.assert(actor, group.id, GroupPermission.SETTINGS);
    return group.id;
  }
}
