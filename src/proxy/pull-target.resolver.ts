import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { MetricsService } from '../observability/metrics.service.js';
import { Registry } from '../registries/registry.entity.js';
import { CredentialEncryptionService, UnknownEncryptionKeyError, UnreadableCredentialsError } from '../upstreams/credential-encryption.service.js';
import { UpstreamClient } from '../upstreams/client/upstream-client.js';
import { Upstream } from '../upstreams/upstream.entity.js';
import type { PullTarget, PullUpstream } from './pull-target.js';

interface UpstreamRow {
  id: number;
  group_id: number;
  position: number;
  url: string;
  username: string | null;
  password_ciphertext: string | null;
  credentials_key_id: string | null;
  cache_validity_hours: number;
  auth_url: string | null;
  mirror_hosts: string[];
}

/**
 * Loads what a pull needs about a registry in one query: its group and its upstreams in position
 * order, credentials decrypted in memory only. Also feeds upstream latency and errors into the
 * metrics (UpstreamsService persists the token realm an upstream reveals).
 */
@Injectable()
export class PullTargetResolver implements OnModuleInit {
  private readonly logger = new Logger(PullTargetResolver.name);

  constructor(
    @InjectRepository(Registry) private readonly registries: Repository<Registry>,
    @InjectRepository(Upstream) private readonly upstreamRows: Repository<Upstream>,
    private readonly encryption: CredentialEncryptionService,
    private readonly client: UpstreamClient,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    this.client.addObserver({
      onRequest: (event) => {
        if (event.target !== 'registry') return;
        this.metrics.upstreamDuration.observe({ method: event.method, status: String(event.status ?? 'error') }, event.durationMs / 1000);
      },
    });
  }

  /** The registry and its ordered upstreams, or undefined when there is no such registry. */
  async resolve(registryId: number): Promise<PullTarget | undefined> {
    const rows: (UpstreamRow & { registry_group_id: number; registry_anonymous_pull: boolean })[] = await this.registries.query(
      `SELECT r.group_id AS registry_group_id, r.anonymous_pull AS registry_anonymous_pull, u.id, u.group_id, ru.position, u.url, u.username, u.password_ciphertext,
              u.credentials_key_id, u.cache_validity_hours, u.auth_url, u.mirror_hosts
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

  /** One upstream, for background jobs (no registry involved). */
  async upstream(upstreamId: number): Promise<PullUpstream | undefined> {
    const row = await this.upstreamRows.findOneBy({ id: upstreamId });
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

  private toPullUpstream(row: UpstreamRow): PullUpstream {
    const upstream = { id: row.id, groupId: row.group_id, position: row.position, cacheValidityHours: row.cache_validity_hours, mirrorHosts: row.mirror_hosts ?? [] };
    const descriptor = { id: row.id, url: row.url, authUrl: row.auth_url };
    if (!row.password_ciphertext || !row.credentials_key_id) return { ...upstream, descriptor: { ...descriptor, username: row.username, password: null } };
    try {
      const password = this.encryption.decrypt({ ciphertext: row.password_ciphertext, keyId: row.credentials_key_id }, row.id);
      return { ...upstream, descriptor: { ...descriptor, username: row.username, password } };
    } catch (err) {
      if (!(err instanceof UnreadableCredentialsError || err instanceof UnknownEncryptionKeyError)) throw err;
      // this upstream fails on its own (the others of the registry still answer); no credentials are sent
      this.logger.warn(err.message);
      return { ...upstream, descriptor: { ...descriptor, credentialsUnreadable: true } };
    }
  }
}
