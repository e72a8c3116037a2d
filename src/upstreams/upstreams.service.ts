import { STATUS_CODES } from 'node:http';
import { randomUUID } from 'node:crypto';
import { BadRequestException, Inject, Injectable, Logger, NotFoundException, OnApplicationBootstrap, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, IsNull, Not, Repository } from 'typeorm';
import type { Actor } from '../accounts/actor.js';
import { GroupPermission } from '../accounts/actor.js';
import { GroupAccessPolicy } from '../accounts/group-access.policy.js';
import { INVALIDATION_BUS, type InvalidationBus } from '../invalidation/invalidation-bus.js';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.js';
import { canonicalRegistryHost } from '../oci/registry-host.js';
import { MetricsService } from '../observability/metrics.service.js';
import { GroupResolver } from '../accounts/group-resolver.service.js';
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { Page } from '../common/pagination.js';
import type { PageRequest } from '../common/page-request.js';
import { upstreamNotFound } from '../common/not-found.exceptions.js';
import type { PermissionCheckOptions } from '../common/permission-check-options.js';
import { lockRegistry, RegistriesService } from '../registries/registries.service.js';
import { UpstreamClient, type UpstreamDescriptor } from './client/upstream-client.js';
import { classifyUpstreamError, UpstreamError } from './client/upstream-error.js';
import { InvalidUpstreamUrlError, normalizeUpstreamUrl } from './client/upstream-url.js';
import { CredentialEncryptionService, UnknownEncryptionKeyError, UnreadableCredentialsError } from './credential-encryption.service.js';
import type { PullTarget, PullUpstream } from './pull-target.js';
import { RegistryUpstream } from './registry-upstream.entity.js';
import { RegistryUpstreamsService } from './registry-upstreams.service.js';
import { Upstream } from './upstream.entity.js';

/** What the `test` endpoints ask for when the upstream has nothing cached yet (GitLab's container TEST_PATH). */
export const UPSTREAM_TEST_PATH = '/library/alpine/manifests/latest';

export interface UpstreamAttributes {
  url?: string;
  name?: string;
  description?: string | null;
  username?: string | null;
  password?: string | null;
  cacheValidityHours?: number;
  /** Registry hosts the upstream mirrors (validated and canonicalised here). */
  mirrorHosts?: string[];
}

export type UpstreamCreateParams = UpstreamAttributes & { registryId: number; url: string; name: string };
export type UpstreamUpdateParams = UpstreamAttributes & { id: number };

export interface LinkedUpstream {
  upstream: Upstream;
  link: RegistryUpstream;
}

export interface UpstreamDetail {
  upstream: Upstream;
  links: RegistryUpstream[];
}

export interface UpstreamTestResult {
  success: boolean;
  result?: string;
}

interface Credentials {
  username: string;
  password: string;
}

/** A row of the pull-target query (snake_case, as Postgres returns it). */
interface PullUpstreamRow {
  id: number;
  group_id: number;
  position: number;
  url: string;
  username: string | null;
  password_ciphertext: string | null;
  credentials_key_id: string | null;
  cache_validity_hours: number;
  auth_url: string | null;
  mirror_hosts: string[] | null;
}

/**
 * Upstreams: created inside a registry (linked at the end of its list), listed per group or per
 * registry, updated (a new url drops the credentials unless new ones come with it), deleted (closing
 * the gaps it leaves), and tested against the remote registry. Passwords are sealed with
 * CredentialEncryptionService and only ever decrypted into an UpstreamDescriptor for the client.
 * Every change tells the InvalidationBus once committed.
 */
@Injectable()
export class UpstreamsService implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(UpstreamsService.name);
  private removeObserver?: () => void;
  /** Where a test of an existing upstream probes: a path it has served (the cache-entries module tells). */
  private cachedPathOf: (upstreamId: number) => Promise<string | undefined> = () => Promise.resolve(undefined);

  constructor(
    @InjectRepository(Upstream) private readonly upstreams: Repository<Upstream>,
    @InjectRepository(RegistryUpstream) private readonly links: Repository<RegistryUpstream>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registries: RegistriesService,
    private readonly registryUpstreams: RegistryUpstreamsService,
    private readonly groups: GroupResolver,
    private readonly policy: GroupAccessPolicy,
    private readonly encryption: CredentialEncryptionService,
    private readonly client: UpstreamClient,
    @Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    // The token endpoint an upstream challenges with is remembered, so a restart fetches tokens up front.
    // Upstream latency and errors feed the metrics.
    this.removeObserver = this.client.addObserver({
      onRealmDiscovered: (upstreamId, authUrl, upstreamUrl) => void this.rememberAuthUrl(upstreamId, authUrl, upstreamUrl),
      onRequest: (event) => {
        if (event.target !== 'registry') return;
        this.metrics.upstreamDuration.observe({ method: event.method, status: String(event.status ?? 'error') }, event.durationMs / 1000);
      },
    });
  }

  onModuleDestroy(): void {
    this.removeObserver?.();
  }

  /**
   * Lets a module above this one (cache-entries) say which path an upstream has served, so `test()` probes
   * something the upstream is known to have (GitLab's behaviour) without this module reading its table.
   */
  probeCachedPathsWith(cachedPathOf: (upstreamId: number) => Promise<string | undefined>): void {
    this.cachedPathOf = cachedPathOf;
  }

  /**
   * Re-seals credentials sealed with a previous key (ENCRYPTION_PREVIOUS_KEYS), or sealed before
   * ciphertexts were bound to their row, with the current key for their row. A row changed meanwhile
   * (its ciphertext is no longer the one read) is left to that change.
   */
  async onApplicationBootstrap(): Promise<void> {
    const sealedRows = await this.upstreams.findBy({ passwordCiphertext: Not(IsNull()) });
    const stale = sealedRows.filter((u) => this.encryption.needsResealing({ ciphertext: u.passwordCiphertext!, keyId: u.credentialsKeyId ?? '' }));
    let resealed = 0;
    for (const upstream of stale) {
      try {
        const sealed = this.encryption.encrypt(this.passwordOf(upstream) ?? '', upstream.id);
        const result = await this.upstreams.update(
          { id: upstream.id, passwordCiphertext: upstream.passwordCiphertext! },
          { passwordCiphertext: sealed.ciphertext, credentialsKeyId: sealed.keyId },
        );
        resealed += result.affected ?? 0;
      } catch (err) {
        this.logger.warn(`cannot re-seal the credentials of upstream ${upstream.id}: ${(err as Error).message}`);
      }
    }
    if (resealed) this.logger.log(`re-sealed the credentials of ${resealed} upstream(s) with the current key, bound to their row`);
  }

  async listForGroup(actor: Actor, groupRef: string | number, page: PageRequest, filter: { upstreamName?: string } = {}): Promise<Page<Upstream>> {
    const group = await this.groups.resolve(groupRef);
    await this.policy.assert(actor, group.id, GroupPermission.READ);
    const query = this.upstreams.createQueryBuilder('u').where('u.group_id = :groupId', { groupId: group.id });
    if (filter.upstreamName) {
      query.andWhere(`u.name ILIKE :name ESCAPE '\\'`, { name: `%${escapeLike(filter.upstreamName)}%` });
    }
    const [items, total] = await query.orderBy('u.id', 'ASC').skip(page.skip).take(page.perPage).getManyAndCount();
    return new Page(items, total, page.page, page.perPage);
  }

  /** A registry's upstreams in position order, each with its link. */
  async listForRegistry(actor: Actor, registryId: number): Promise<LinkedUpstream[]> {
    const registry = await this.registries.findAccessible(actor, registryId, GroupPermission.READ);
    return this.orderedUpstreams(registry.id);
  }

  /** Position order, no permission check: for the pull path, which authorises the registry itself. */
  async orderedUpstreams(registryId: number): Promise<LinkedUpstream[]> {
    const links = await this.links.find({ where: { registryId }, order: { position: 'ASC' } });
    if (links.length === 0) return [];
    const upstreams = await this.upstreams.findBy(links.map((l) => ({ id: l.upstreamId })));
    const byId = new Map(upstreams.map((u) => [u.id, u]));
    return links.filter((l) => byId.has(l.upstreamId)).map((link) => ({ upstream: byId.get(link.upstreamId)!, link }));
  }

  async findAccessible(actor: Actor | null, id: number, permission: GroupPermission, options: PermissionCheckOptions = {}): Promise<Upstream> {
    const upstream = await this.upstreams.findOneBy({ id });
    if (!upstream) throw upstreamNotFound();
    if (!options.skipPermissionCheck) {
      if (!actor) throw new Error('an actor is required unless skipPermissionCheck is set');
      await this.policy.assert(actor, upstream.groupId, permission, upstreamNotFound);
    }
    return upstream;
  }

  async detail(actor: Actor, id: number): Promise<UpstreamDetail> {
    const upstream = await this.findAccessible(actor, id, GroupPermission.READ);
    const links = await this.links.find({ where: { upstreamId: upstream.id }, order: { registryId: 'ASC' } });
    return { upstream, links };
  }

  /**
   * Creates an upstream in a registry (params carry `registryId`; it is linked at position max + 1)
   * or updates one (params carry `id`).
   */
  async createOrUpdate(actor: Actor | null, params: UpstreamCreateParams, options?: PermissionCheckOptions): Promise<LinkedUpstream>;
  async createOrUpdate(actor: Actor | null, params: UpstreamUpdateParams, options?: PermissionCheckOptions): Promise<Upstream>;
  async createOrUpdate(
    actor: Actor | null,
    params: UpstreamCreateParams | UpstreamUpdateParams,
    options: PermissionCheckOptions = {},
  ): Promise<LinkedUpstream | Upstream> {
    return 'id' in params ? this.update(actor, params, options) : this.create(actor, params, options);
  }

  private async create(actor: Actor | null, params: UpstreamCreateParams, options: PermissionCheckOptions): Promise<LinkedUpstream> {
    const registry = await this.registries.findAccessible(actor, params.registryId, GroupPermission.WRITE, options);
    const name = requiredText('name', params.name);
    const credentials = credentialsOf(params);
    const url = await this.checkedUrl(params.url);
    await this.assertNoTwin(registry.groupId, url, credentials);
    const created = await this.dataSource.transaction(async (manager) => {
      await lockRegistry(manager, registry.id);
      const upstream = await manager.save(
        manager.create(Upstream, {
          groupId: registry.groupId,
          name,
          description: emptyToNull(params.description),
          url,
          username: null,
          passwordCiphertext: null,
          credentialsKeyId: null,
          cacheValidityHours: params.cacheValidityHours ?? 24,
          mirrorHosts: mirrorHostsOf(params.mirrorHosts ?? []),
          authUrl: null,
        }),
      );
      if (credentials) {
        // sealed for this row (CredentialEncryptionService), so only once it has its id, in the same transaction
        const sealed = this.encryption.encrypt(credentials.password, upstream.id);
        const sealedCredentials = { username: credentials.username, passwordCiphertext: sealed.ciphertext, credentialsKeyId: sealed.keyId };
        await manager.update(Upstream, { id: upstream.id }, sealedCredentials);
        Object.assign(upstream, sealedCredentials);
      }
      const link = await this.registryUpstreams.append(manager, registry, upstream.id);
      return { upstream, link };
    });
    this.bus.changed(`upstream ${created.upstream.id} created in registry ${registry.id}`);
    return created;
  }

  private async update(actor: Actor | null, params: UpstreamUpdateParams, options: PermissionCheckOptions): Promise<Upstream> {
    const upstream = await this.findAccessible(actor, params.id, GroupPermission.WRITE, options);
    const fields = ['url', 'name', 'description', 'username', 'password', 'cacheValidityHours', 'mirrorHosts'] as const;
    if (fields.every((f) => params[f] === undefined)) {
      throw new BadRequestException({
        message: 'url, name, description, username, password, cache_validity_hours, mirror_hosts are missing, at least one parameter must be provided',
        error: 'Bad Request',
        statusCode: 400,
      });
    }
    const changes: Partial<Upstream> = {};
    if (params.name !== undefined) changes.name = requiredText('name', params.name);
    if (params.description !== undefined) changes.description = emptyToNull(params.description);
    if (params.cacheValidityHours !== undefined) changes.cacheValidityHours = params.cacheValidityHours;
    if (params.mirrorHosts !== undefined) changes.mirrorHosts = mirrorHostsOf(params.mirrorHosts);
    let url = upstream.url;
    if (params.url !== undefined) {
      url = await this.checkedUrl(params.url);
      if (url !== upstream.url) {
        changes.url = url;
        changes.authUrl = null; // the realm belonged to the old registry
      }
    }
    const credentialsGiven = params.username !== undefined || params.password !== undefined;
    let credentials: Credentials | undefined | 'unchanged' = 'unchanged';
    if (credentialsGiven) {
      if (params.username === undefined || params.password === undefined) {
        throw new InvalidFieldException(params.username === undefined ? 'username' : 'password', 'must be given together with the password (or username)');
      }
      credentials = credentialsOf(params);
    } else if (changes.url !== undefined) {
      credentials = undefined; // a new url without new credentials: never send the old ones elsewhere
    }
    if (credentials !== 'unchanged') {
      const sealed = credentials ? this.encryption.encrypt(credentials.password, upstream.id) : undefined;
      changes.username = credentials?.username ?? null;
      changes.passwordCiphertext = sealed?.ciphertext ?? null;
      changes.credentialsKeyId = sealed?.keyId ?? null;
    }
    if (changes.url !== undefined || credentials !== 'unchanged') {
      const effective = credentials === 'unchanged' ? this.credentialsOfUpstream(upstream) : credentials;
      await this.assertNoTwin(upstream.groupId, url, effective, upstream.id);
    }
    if (Object.keys(changes).length > 0) {
      const result = await this.upstreams.update({ id: upstream.id }, changes);
      if (!result.affected) throw upstreamNotFound();
      this.client.forget(upstream.id);
      this.bus.changed(`upstream ${upstream.id} updated`);
    }
    return this.upstreams.findOneByOrFail({ id: upstream.id });
  }

  /** Deletes an upstream, its links (closing the gaps in every registry it was in) and its cache entries. */
  async delete(actor: Actor, id: number): Promise<void> {
    const upstream = await this.findAccessible(actor, id, GroupPermission.WRITE);
    await this.dataSource.transaction(async (manager) => {
      const registryIds = (
        (await manager.query('SELECT DISTINCT registry_id FROM registry_upstreams WHERE upstream_id = $1 ORDER BY registry_id', [upstream.id])) as {
          registry_id: number;
        }[]
      ).map((r) => Number(r.registry_id));
      for (const registryId of registryIds) await lockRegistry(manager, registryId).catch(ignoreNotFound);
      await manager.delete(Upstream, { id: upstream.id });
      for (const registryId of registryIds) await this.registryUpstreams.compact(manager, registryId);
    });
    this.client.forget(upstream.id);
    this.bus.changed(`upstream ${upstream.id} deleted`);
  }

  /** Tests an existing upstream, optionally with another url and/or other credentials (nothing is saved). */
  async test(actor: Actor, id: number, overrides: { url?: string; username?: string; password?: string } = {}): Promise<UpstreamTestResult> {
    const upstream = await this.findAccessible(actor, id, GroupPermission.WRITE);
    const credentialsGiven = overrides.username !== undefined || overrides.password !== undefined;
    let credentials: Credentials | undefined;
    if (credentialsGiven) credentials = credentialsOf(overrides);
    else if (overrides.url === undefined) {
      try {
        credentials = this.credentialsOfUpstream(upstream);
      } catch (err) {
        if (!(err instanceof UnreadableCredentialsError)) throw err;
        this.logger.warn(err.message);
        return { success: false, result: 'Error: the stored credentials cannot be decrypted; set them again' };
      }
    }
    const url = overrides.url !== undefined ? await this.checkedUrl(overrides.url) : upstream.url;
    const cachedPath = await this.cachedPathOf(upstream.id);
    const path = cachedPath ? `/${cachedPath.replace(/^\/+/, '')}` : UPSTREAM_TEST_PATH;
    return this.probe({ url, username: credentials?.username, password: credentials?.password }, path);
  }

  /** Tests an upstream before creating it (group-level `upstreams/test`). */
  async testNew(actor: Actor, groupRef: string | number, params: { url: string; username?: string; password?: string }): Promise<UpstreamTestResult> {
    const group = await this.groups.resolve(groupRef);
    await this.policy.assert(actor, group.id, GroupPermission.WRITE);
    const credentials = credentialsOf(params);
    const url = await this.checkedUrl(params.url);
    return this.probe({ url, username: credentials?.username, password: credentials?.password }, UPSTREAM_TEST_PATH);
  }

  /**
   * What a pull needs about a registry, in one query: its group and its upstreams in position order,
   * credentials decrypted in memory only. Undefined when there is no such registry. An upstream whose
   * credentials cannot be decrypted fails on its own (`credentialsUnreadable`); the others still answer.
   */
  async pullTargetOf(registryId: number): Promise<PullTarget | undefined> {
    const rows: (PullUpstreamRow & { registry_group_id: number; registry_anonymous_pull: boolean })[] = await this.dataSource.query(
      `SELECT r.group_id AS registry_group_id, r.anonymous_pull AS registry_anonymous_pull, u.id, u.group_id, ru.position, u.url, u.username,
              u.password_ciphertext, u.credentials_key_id, u.cache_validity_hours, u.auth_url, u.mirror_hosts
         FROM registries r
         LEFT JOIN registry_upstreams ru ON ru.registry_id = r.id
         LEFT JOIN upstreams u ON u.id = ru.upstream_id
        WHERE r.id = $1
        ORDER BY ru.position`,
      [registryId],
    );
    if (rows.length === 0) return undefined;
    return {
      registryId,
      groupId: rows[0].registry_group_id,
      anonymousPull: rows[0].registry_anonymous_pull,
      upstreams: rows.filter((r) => r.id !== null).map((r) => this.toPullUpstream(r)),
    };
  }

  /** One upstream as a pull needs it, for background jobs (no registry involved). */
  async pullUpstreamOf(upstreamId: number): Promise<PullUpstream | undefined> {
    const row = await this.upstreams.findOneBy({ id: upstreamId });
    if (!row) return undefined;
    return this.toPullUpstream({
      id: row.id,
      group_id: row.groupId,
      position: 0,
      url: row.url,
      username: row.username,
      password_ciphertext: row.passwordCiphertext,
      credentials_key_id: row.credentialsKeyId,
      cache_validity_hours: row.cacheValidityHours,
      auth_url: row.authUrl,
      mirror_hosts: row.mirrorHosts,
    });
  }

  private toPullUpstream(row: PullUpstreamRow): PullUpstream {
    const upstream = {
      id: row.id,
      groupId: row.group_id,
      position: row.position,
      cacheValidityHours: row.cache_validity_hours,
      mirrorHosts: row.mirror_hosts ?? [],
    };
    const descriptor = { id: row.id, url: row.url, authUrl: row.auth_url };
    if (!row.password_ciphertext || !row.credentials_key_id) return { ...upstream, descriptor: { ...descriptor, username: row.username, password: null } };
    try {
      const password = this.encryption.decrypt({ ciphertext: row.password_ciphertext, keyId: row.credentials_key_id }, row.id);
      return { ...upstream, descriptor: { ...descriptor, username: row.username, password } };
    } catch (err) {
      if (!(err instanceof UnreadableCredentialsError || err instanceof UnknownEncryptionKeyError)) throw err;
      this.logger.warn(err.message);
      return { ...upstream, descriptor: { ...descriptor, credentialsUnreadable: true } };
    }
  }

  private passwordOf(upstream: Upstream): string | null {
    if (upstream.passwordCiphertext === null || upstream.credentialsKeyId === null) return null;
    return this.encryption.decrypt({ ciphertext: upstream.passwordCiphertext, keyId: upstream.credentialsKeyId }, upstream.id);
  }

  /** The password, or undefined when it cannot be decrypted (then it is the same as no given password). */
  private readablePasswordOf(upstream: Upstream): string | null | undefined {
    try {
      return this.passwordOf(upstream);
    } catch (err) {
      if (err instanceof UnreadableCredentialsError) return undefined;
      throw err;
    }
  }

  private credentialsOfUpstream(upstream: Upstream): Credentials | undefined {
    const password = this.passwordOf(upstream);
    return upstream.username !== null && password !== null ? { username: upstream.username, password } : undefined;
  }

  /** HEAD `path` with a throwaway client identity, so a test never disturbs the real upstream's tokens. */
  private async probe(target: Omit<UpstreamDescriptor, 'id'>, path: string): Promise<UpstreamTestResult> {
    const id = `test-${randomUUID()}`;
    try {
      const res = await this.client.head({ ...target, id }, path, { accept: MANIFEST_MEDIA_TYPES });
      if ((res.status >= 200 && res.status < 300) || res.status === 404) return { success: true };
      return { success: false, result: `Error: ${res.status} - ${STATUS_CODES[res.status] ?? 'Unknown'}` };
    } catch (err) {
      const error = classifyUpstreamError(err, id);
      if (error.kind === 'status' && error.status) {
        return { success: false, result: `Error: ${error.status} - ${STATUS_CODES[error.status] ?? 'Unknown'}` };
      }
      return { success: false, result: `Error: ${error.message}` };
    } finally {
      this.client.forget(id);
    }
  }

  /** Normalised (http(s), no trailing `/` or `/v2`) and allowed by the address policy, or a 400 on `url`. */
  private async checkedUrl(raw: string): Promise<string> {
    let url: string;
    try {
      url = normalizeUpstreamUrl(raw);
    } catch (err) {
      if (err instanceof InvalidUpstreamUrlError) throw new InvalidFieldException('url', err.message);
      throw err;
    }
    try {
      await this.client.assertUrlAllowed(url);
    } catch (err) {
      if (err instanceof UpstreamError) {
        this.logger.warn(`upstream url refused: ${err.message}; ${err.detail ?? url}`);
        throw new InvalidFieldException('url', err.kind === 'refused-address' ? `is blocked: ${err.message}` : 'is blocked: the host cannot be resolved');
      }
      throw err;
    }
    return url;
  }

  /** GitLab refuses two upstreams of one group with the same url and the same credentials. */
  private async assertNoTwin(groupId: number, url: string, credentials: Credentials | undefined, exceptId?: number): Promise<void> {
    const candidates = await this.upstreams.findBy({ groupId, url, username: credentials?.username ?? IsNull() });
    for (const other of candidates) {
      if (other.id === exceptId) continue;
      const same = credentials ? this.readablePasswordOf(other) === credentials.password : !other.hasCredentials;
      if (same) throw new InvalidFieldException('url', 'already has a remote upstream with the same url and credentials');
    }
  }

  /**
   * Persists the token endpoint an upstream's challenge named, for the URL that challenge came from
   * only: when the url changed meanwhile (an update clears auth_url), the learnt realm is dropped.
   */
  async rememberAuthUrl(upstreamId: number | string, authUrl: string, learntFromUrl: string): Promise<void> {
    const id = typeof upstreamId === 'number' ? upstreamId : /^\d+$/.test(upstreamId) ? Number(upstreamId) : undefined;
    if (id === undefined || authUrl.length > 2048) return;
    try {
      await this.dataSource.query('UPDATE upstreams SET auth_url = $2 WHERE id = $1 AND url = $3 AND auth_url IS DISTINCT FROM $2', [
        id,
        authUrl,
        learntFromUrl,
      ]);
    } catch (err) {
      this.logger.warn(`cannot remember the token endpoint of upstream ${id}: ${(err as Error).message}`);
    }
  }
}

/** Username and password both given (non-empty) or both absent/empty; anything else is a 400. */
function credentialsOf(params: { username?: string | null; password?: string | null }): Credentials | undefined {
  const username = params.username === null || params.username === undefined || params.username === '' ? undefined : params.username;
  const password = params.password === null || params.password === undefined || params.password === '' ? undefined : params.password;
  if (username === undefined && password !== undefined) throw new InvalidFieldException('username', "can't be blank when a password is given");
  if (password === undefined && username !== undefined) throw new InvalidFieldException('password', "can't be blank when a username is given");
  return username !== undefined && password !== undefined ? { username, password } : undefined;
}

/** Declared mirror hosts, canonical and without duplicates; a value that is not a registry host is a 400 on `mirror_hosts`. */
function mirrorHostsOf(values: string[]): string[] {
  const hosts = new Set<string>();
  for (const value of values) {
    const host = canonicalRegistryHost(value);
    if (!host)
      throw new InvalidFieldException(
        'mirror_hosts',
        `"${String(value).slice(0, 255)}" is not a registry host (a name or address with an optional port, e.g. docker.io or registry.local:5000)`,
      );
    hosts.add(host);
  }
  return [...hosts];
}

function requiredText(field: string, value: string | undefined): string {
  const trimmed = typeof value === 'string' ? value.trim() : '';
  if (!trimmed) throw new InvalidFieldException(field, "can't be blank");
  return trimmed;
}

function emptyToNull(value: string | null | undefined): string | null {
  return value === undefined || value === null || value === '' ? null : value;
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function ignoreNotFound(err: unknown): void {
  if (!(err instanceof NotFoundException)) throw err;
}
