import { BadRequestException, Inject, Injectable } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, QueryFailedError, Repository } from 'typeorm';
import type { Actor } from '../accounts/actor.js';
import { GroupPermission } from '../accounts/actor.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { limitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import type { LimitsConfig } from '../config/config.js';
import { GroupResolver } from '../accounts/group-resolver.service.js';
import { registryNotFound } from '../common/not-found.exceptions.js';
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { Page } from '../common/pagination.js';
import type { PageRequest } from '../common/page-request.js';
import type { PermissionCheckOptions } from '../common/permission-check-options.js';
import { Registry } from './registry.entity.js';

export type RegistryCreateParams = {
  /** The owning group: id or full path. */
  group: string | number;
  name: string;
  description?: string | null;
  /** Needs SETTINGS (group owner) on top of WRITE. */
  anonymousPull?: boolean;
};

export type RegistryUpdateParams = {
  id: number;
  name?: string;
  description?: string | null;
  /** Needs SETTINGS (group owner) on top of WRITE. */
  anonymousPull?: boolean;
};

/** A Postgres unique violation on the named constraint. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  if (!(err instanceof QueryFailedError)) return false;
  const driverError = err.driverError as { code?: string; constraint?: string };
  return driverError.code === '23505' && (constraint === undefined || driverError.constraint === constraint);
}

/**
 * Registries of a group: list, read, create or update (with the per-group limit). Deleting one (with its
 * exclusive upstreams) is RegistryUpstreamsService's. Updates and
 * deletes tell the InvalidationBus once committed.
 */
@Injectable()
export class RegistriesService {
  constructor(
    @InjectRepository(Registry) private readonly registries: Repository<Registry>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly policy: GroupAccessPolicy,
    private readonly groups: GroupResolver,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  async listForGroup(actor: Actor, groupRef: string | number, page: PageRequest): Promise<Page<Registry>> {
    const group = await this.groups.resolve(groupRef);
    await this.policy.assert(actor, group.id, GroupPermission.READ);
    const [items, total] = await this.registries.findAndCount({
      where: { groupId: group.id },
      order: { id: 'ASC' },
      skip: page.skip,
      take: page.perPage,
    });
    return new Page(items, total, page.page, page.perPage);
  }

  /** The registry, when the actor holds `permission` on its group; 404 when it does not exist or is hidden. */
  async findAccessible(actor: Actor | null, id: number, permission: GroupPermission, options: PermissionCheckOptions = {}): Promise<Registry> {
    const registry = await this.registries.findOneBy({ id });
    if (!registry) throw registryNotFound();
    if (!options.skipPermissionCheck) await this.policy.assert(requireActor(actor), registry.groupId, permission, registryNotFound);
    return registry;
  }

  /**
   * Creates a registry (params carry `group`) or updates one (params carry `id`). Creation holds a lock
   * on the group row while it counts, so concurrent creates cannot exceed REGISTRIES_PER_GROUP.
   */
  async createOrUpdate(actor: Actor | null, params: RegistryCreateParams | RegistryUpdateParams, options: PermissionCheckOptions = {}): Promise<Registry> {
    return 'id' in params ? this.update(actor, params, options) : this.create(actor, params, options);
  }

  private async create(actor: Actor | null, params: RegistryCreateParams, options: PermissionCheckOptions): Promise<Registry> {
    const group = await this.groups.resolve(params.group);
    if (!options.skipPermissionCheck) await this.policy.assert(requireActor(actor), group.id, GroupPermission.WRITE);
    if (params.anonymousPull !== undefined && !options.skipPermissionCheck) {
      await this.policy.assert(requireActor(actor), group.id, GroupPermission.SETTINGS);
    }
    const name = validName(params.name);
    try {
      return await this.dataSource.transaction(async (manager) => {
        await manager.query('SELECT id FROM groups WHERE id = $1 FOR NO KEY UPDATE', [group.id]);
        const count = await manager.countBy(Registry, { groupId: group.id });
        if (count >= this.limits.registriesPerGroup) {
          throw new InvalidFieldException('group', `${this.limits.registriesPerGroup} registries is the maximum allowed per top-level group`);
        }
        const registry = manager.create(Registry, {
          groupId: group.id,
          name,
          description: emptyToNull(params.description),
          anonymousPull: params.anonymousPull ?? false,
        });
        return manager.save(registry);
      });
    } catch (err) {
      throw translateRegistryError(err);
    }
  }

  private async update(actor: Actor | null, params: RegistryUpdateParams, options: PermissionCheckOptions): Promise<Registry> {
    const registry = await this.findAccessible(actor, params.id, GroupPermission.WRITE, options);
    if (params.name === undefined && params.description === undefined && params.anonymousPull === undefined) {
      throw new BadRequestException({
        message: 'name, description, anonymous_pull are missing, at least one parameter must be provided',
        error: 'Bad Request',
        statusCode: 400,
      });
    }
    const changes: Partial<Registry> = {};
    if (params.name !== undefined) changes.name = validName(params.name);
    if (params.description !== undefined) changes.description = emptyToNull(params.description);
    if (params.anonymousPull !== undefined) {
      if (!options.skipPermissionCheck) await this.policy.assert(requireActor(actor), registry.groupId, GroupPermission.SETTINGS);
      changes.anonymousPull = params.anonymousPull;
    }
    try {
      const result = await this.registries.update({ id: registry.id }, changes);
      if (!result.affected) throw registryNotFound();
    } catch (err) {
      throw translateRegistryError(err);
    }
    this.bus.changed(`registry ${registry.id} updated`);
    return this.registries.findOneByOrFail({ id: registry.id });
  }
}

function requireActor(actor: Actor | null): Actor {
  if (!actor) throw new Error('an actor is required unless skipPermissionCheck is set');
  return actor;
}

function validName(name: string | undefined): string {
  const trimmed = typeof name === 'string' ? name.trim() : '';
  if (!trimmed) throw new InvalidFieldException('name', "can't be blank");
  return trimmed;
}

function emptyToNull(value: string | null | undefined): string | null {
  return value === undefined || value === null || value === '' ? null : value;
}

function translateRegistryError(err: unknown): unknown {
  if (isUniqueViolation(err, 'registries_group_id_name_key')) return new InvalidFieldException('name', 'has already been taken');
  return err;
}

/**
 * Locks a registry row for the rest of the transaction: every change to a registry's upstream list
 * takes this lock first, so positions are computed from a stable view. 404 when it is gone.
 */
export async function lockRegistry(manager: EntityManager, registryId: number): Promise<void> {
  const rows = (await manager.query('SELECT id FROM registries WHERE id = $1 FOR NO KEY UPDATE', [registryId])) as unknown[];
  if (rows.length === 0) throw registryNotFound();
}
