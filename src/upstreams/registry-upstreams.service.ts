import { ConflictException, Inject, Injectable } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import type { Actor } from '../accounts/actor.js';
import { GroupPermission } from '../accounts/actor.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { limitsConfig } from '../config/config.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import type { LimitsConfig } from '../config/config.js';
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { registryUpstreamNotFound, upstreamNotFound } from '../common/not-found.exceptions.js';
import type { PermissionCheckOptions } from '../common/permission-check-options.js';
import { isUniqueViolation, lockRegistry, RegistriesService } from '../registries/registries.service.js';
import { Registry } from '../registries/registry.entity.js';
import { RegistryUpstream } from './registry-upstream.entity.js';
import { Upstream } from './upstream.entity.js';

const POSITION_CONSTRAINT = 'registry_upstreams_registry_id_position_key';

/**
 * The ordered upstream list of a registry. Every change locks the registry row first
 * (`SELECT ... FOR NO KEY UPDATE`), then shifts positions inside the same transaction with the
 * position uniqueness check deferred to commit, so concurrent requests serialise per registry and
 * positions stay 1..n, unique, without gaps. Every change tells the InvalidationBus once committed
 * (the next pull uses the new list).
 */
@Injectable()
export class RegistryUpstreamsService {
  constructor(
    @InjectRepository(RegistryUpstream) private readonly links: Repository<RegistryUpstream>,
    @InjectRepository(Upstream) private readonly upstreams: Repository<Upstream>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registries: RegistriesService,
    private readonly policy: GroupAccessPolicy,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
  ) {}

  /** A registry with its upstream associations in position order. */
  async detail(actor: Actor, id: number): Promise<{ registry: Registry; links: RegistryUpstream[] }> {
    const registry = await this.registries.findAccessible(actor, id, GroupPermission.READ);
    const links = await this.links.find({ where: { registryId: registry.id }, order: { position: 'ASC' } });
    return { registry, links };
  }

  /**
   * Deletes a registry with its upstream links, and the upstreams no other registry uses (GitLab's
   * semantics), whose cache entries go with them.
   */
  async deleteRegistry(actor: Actor, id: number): Promise<void> {
    const registry = await this.registries.findAccessible(actor, id, GroupPermission.WRITE);
    await this.dataSource.transaction(async (manager) => {
      await lockRegistry(manager, registry.id);
      const exclusive = await exclusiveUpstreamIds(manager, registry.id);
      await manager.delete(Registry, { id: registry.id });
      if (exclusive.length) await manager.createQueryBuilder().delete().from(Upstream).whereInIds(exclusive).execute();
    });
    this.bus.changed(`registry ${registry.id} deleted`);
  }

  /** Associates an existing upstream with a registry, at the end of its list. */
  async link(actor: Actor | null, params: { registryId: number; upstreamId: number }, options: PermissionCheckOptions = {}): Promise<RegistryUpstream> {
    const registry = await this.registries.findAccessible(actor, params.registryId, GroupPermission.WRITE, options);
    const upstream = await this.upstreams.findOneBy({ id: params.upstreamId });
    // An upstream of another group is as invisible here as one that does not exist.
    if (!upstream || upstream.groupId !== registry.groupId) throw upstreamNotFound();
    const link = await this.dataSource.transaction(async (manager) => {
      await lockRegistry(manager, registry.id);
      return this.append(manager, registry, upstream.id);
    });
    this.bus.changed(`upstream ${upstream.id} linked to registry ${registry.id}`);
    return link;
  }

  /** Moves a link to `position` (clamped to the list's length); the links in between shift by one. */
  async move(actor: Actor | null, linkId: number, position: number, options: PermissionCheckOptions = {}): Promise<RegistryUpstream> {
    const found = await this.findAccessible(actor, linkId, GroupPermission.WRITE, options);
    if (!Number.isInteger(position) || position < 1 || position > this.limits.upstreamsPerRegistry) {
      throw new InvalidFieldException('position', `must be between 1 and ${this.limits.upstreamsPerRegistry}`);
    }
    const moved = await this.dataSource.transaction(async (manager) => {
      await lockRegistry(manager, found.registryId);
      const link = await manager.findOneBy(RegistryUpstream, { id: linkId });
      if (!link) throw registryUpstreamNotFound();
      const count = await manager.countBy(RegistryUpstream, { registryId: link.registryId });
      const target = Math.min(position, count);
      if (target === link.position) return link;
      await manager.query(`SET CONSTRAINTS ${POSITION_CONSTRAINT} DEFERRED`);
      if (target < link.position) {
        await manager.query(
          'UPDATE registry_upstreams SET position = position + 1, updated_at = now() WHERE registry_id = $1 AND position >= $2 AND position < $3',
          [link.registryId, target, link.position],
        );
      } else {
        await manager.query(
          'UPDATE registry_upstreams SET position = position - 1, updated_at = now() WHERE registry_id = $1 AND position > $2 AND position <= $3',
          [link.registryId, link.position, target],
        );
      }
      await manager.update(RegistryUpstream, { id: link.id }, { position: target });
      return manager.findOneByOrFail(RegistryUpstream, { id: link.id });
    });
    this.bus.changed(`registry upstream ${linkId} moved`);
    return moved;
  }

  /** Removes a link; the links after it move up, closing the gap. The upstream itself stays. */
  async unlink(actor: Actor | null, linkId: number, options: PermissionCheckOptions = {}): Promise<void> {
    const found = await this.findAccessible(actor, linkId, GroupPermission.WRITE, options);
    await this.dataSource.transaction(async (manager) => {
      await lockRegistry(manager, found.registryId);
      const deleted = await manager.delete(RegistryUpstream, { id: linkId });
      if (!deleted.affected) throw registryUpstreamNotFound();
      await this.compact(manager, found.registryId);
    });
    this.bus.changed(`registry upstream ${linkId} removed`);
  }

  async findAccessible(actor: Actor | null, linkId: number, permission: GroupPermission, options: PermissionCheckOptions = {}): Promise<RegistryUpstream> {
    const link = await this.links.findOneBy({ id: linkId });
    if (!link) throw registryUpstreamNotFound();
    if (!options.skipPermissionCheck) {
      if (!actor) throw new Error('an actor is required unless skipPermissionCheck is set');
      await this.policy.assert(actor, link.groupId, permission, registryUpstreamNotFound);
    }
    return link;
  }

  /**
   * Appends `upstreamId` to the registry's list (position max + 1), within `manager`'s transaction,
   * which must hold the registry lock (lockRegistry). Enforces UPSTREAMS_PER_REGISTRY.
   */
  async append(manager: EntityManager, registry: Pick<Registry, 'id' | 'groupId'>, upstreamId: number): Promise<RegistryUpstream> {
    const [{ count, max }] = (await manager.query(
      'SELECT count(*)::int AS count, coalesce(max(position), 0)::int AS max FROM registry_upstreams WHERE registry_id = $1',
      [registry.id],
    )) as { count: number; max: number }[];
    if (count >= this.limits.upstreamsPerRegistry) {
      throw new InvalidFieldException('registry', `${this.limits.upstreamsPerRegistry} upstreams is the maximum allowed per registry`);
    }
    const exists = await manager.existsBy(RegistryUpstream, { registryId: registry.id, upstreamId });
    if (exists) throw new ConflictException('409 Conflict: the upstream is already associated with this registry');
    try {
      const link = manager.create(RegistryUpstream, { groupId: registry.groupId, registryId: registry.id, upstreamId, position: max + 1 });
      return await manager.save(link);
    } catch (err) {
      if (isUniqueViolation(err, 'registry_upstreams_registry_id_upstream_id_key')) {
        throw new ConflictException('409 Conflict: the upstream is already associated with this registry');
      }
      throw err;
    }
  }

  /** Renumbers a registry's links 1..n in their current order (after deletions). Needs the registry lock. */
  async compact(manager: EntityManager, registryId: number): Promise<void> {
    await manager.query(`SET CONSTRAINTS ${POSITION_CONSTRAINT} DEFERRED`);
    await manager.query(
      `UPDATE registry_upstreams ru SET position = ordered.rank, updated_at = now()
         FROM (SELECT id, row_number() OVER (ORDER BY position, id) AS rank FROM registry_upstreams WHERE registry_id = $1) ordered
        WHERE ru.id = ordered.id AND ru.position <> ordered.rank`,
      [registryId],
    );
  }
}

/** Upstreams linked to this registry and to no other one. */
export async function exclusiveUpstreamIds(manager: EntityManager, registryId: number): Promise<number[]> {
  const rows = (await manager.query(
    `SELECT ru.upstream_id AS id FROM registry_upstreams ru
      WHERE ru.registry_id = $1
        AND NOT EXISTS (SELECT 1 FROM registry_upstreams other WHERE other.upstream_id = ru.upstream_id AND other.registry_id <> $1)`,
    [registryId],
  )) as { id: number }[];
  return rows.map((r) => Number(r.id));
}
