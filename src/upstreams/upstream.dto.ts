import { ApiProperty } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import { ArrayMaxSize, IsArray, IsInt, IsNotEmpty, IsOptional, IsString, Max, MaxLength, Min, ValidateIf } from 'class-validator';
import { PageQueryDto } from '../common/pagination.js';
import { MAX_DESCRIPTION_LENGTH } from '../registries/registry.dto.js';
import type { UpstreamHealthSnapshot } from './client/upstream-health.js';
import type { RegistryUpstream } from './registry-upstream.entity.js';
import type { Upstream } from './upstream.entity.js';

export const MAX_UPSTREAM_NAME_LENGTH = 255;
export const MAX_CREDENTIAL_LENGTH = 510;
/** Accepted before normalisation; the stored, normalised URL is at most 255 characters. */
const MAX_URL_INPUT_LENGTH = 2048;
const MAX_CACHE_VALIDITY_HOURS = 2_147_483_647;

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);
const isGiven = (value: unknown) => value !== undefined && value !== null;

/** Hosts one upstream may declare it mirrors. */
export const MAX_MIRROR_HOSTS = 20;
const MIRROR_HOSTS_DESCRIPTION =
  'Registry hosts this upstream mirrors besides its own URL\'s host (it is itself a mirror, e.g. a private cache of Docker Hub: `["docker.io"]`). ' +
  'A pull with `?ns=<host>` (containerd sends it to mirrors) only asks the upstreams serving that host. ' +
  '`docker.io`, `index.docker.io` and `registry-1.docker.io` are one host. Stored lower case; [] clears.';

export class UpstreamCreateDto {
  @ApiProperty({
    description: 'The URL of the upstream container registry (http or https; a trailing `/` or `/v2` is removed).',
    example: 'https://registry-1.docker.io',
  })
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_URL_INPUT_LENGTH)
  url: string;

  @ApiProperty({ description: 'The name of the upstream registry.', maxLength: MAX_UPSTREAM_NAME_LENGTH, example: 'Docker Hub' })
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_UPSTREAM_NAME_LENGTH)
  name: string;

  @ApiProperty({
    type: String,
    required: false,
    nullable: true,
    description: 'The description of the upstream registry.',
    maxLength: MAX_DESCRIPTION_LENGTH,
    example: 'Docker Hub registry',
  })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  @ApiProperty({
    required: false,
    description: 'The username for the upstream registry. Give both username and password, or neither (anonymous).',
    maxLength: MAX_CREDENTIAL_LENGTH,
    example: 'user',
  })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  username?: string;

  @ApiProperty({
    required: false,
    description: 'The password or access token for the upstream registry; stored encrypted and never returned.',
    maxLength: MAX_CREDENTIAL_LENGTH,
    example: 'dckr_pat_example',
    writeOnly: true,
  })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  password?: string;

  @ApiProperty({
    type: 'integer',
    required: false,
    default: 24,
    minimum: 0,
    description: 'How long, in hours, a cached tag is served before the upstream is asked again (0: never).',
    example: 24,
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(MAX_CACHE_VALIDITY_HOURS)
  cache_validity_hours?: number;

  @ApiProperty({ type: [String], required: false, maxItems: MAX_MIRROR_HOSTS, description: MIRROR_HOSTS_DESCRIPTION, example: ['docker.io'] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MAX_MIRROR_HOSTS)
  @IsString({ each: true })
  @MaxLength(255, { each: true })
  mirror_hosts?: string[];
}

/** Provide at least one field. A new url clears the stored credentials unless username and password come with it. */
export class UpstreamUpdateDto {
  @ApiProperty({ required: false, description: 'The URL of the upstream registry.', example: 'https://ghcr.io' })
  @IsOptional()
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_URL_INPUT_LENGTH)
  url?: string;

  @ApiProperty({
    required: false,
    description: 'The name of the upstream registry.',
    maxLength: MAX_UPSTREAM_NAME_LENGTH,
    example: 'GitHub Container Registry',
  })
  @IsOptional()
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_UPSTREAM_NAME_LENGTH)
  name?: string;

  @ApiProperty({
    type: String,
    required: false,
    nullable: true,
    description: 'The description of the upstream registry (null or "" clears it).',
    maxLength: MAX_DESCRIPTION_LENGTH,
    example: 'GHCR, public images',
  })
  @ValidateIf((o: UpstreamUpdateDto) => isGiven(o.description))
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  @ApiProperty({
    type: String,
    required: false,
    nullable: true,
    description: 'The username; give it with password. Both null (or empty) remove the credentials.',
    maxLength: MAX_CREDENTIAL_LENGTH,
    example: 'user',
  })
  @ValidateIf((o: UpstreamUpdateDto) => isGiven(o.username))
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  username?: string | null;

  @ApiProperty({
    type: String,
    required: false,
    nullable: true,
    description: 'The password; give it with username. Stored encrypted, never returned.',
    maxLength: MAX_CREDENTIAL_LENGTH,
    example: 'new-token',
    writeOnly: true,
  })
  @ValidateIf((o: UpstreamUpdateDto) => isGiven(o.password))
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  password?: string | null;

  @ApiProperty({
    type: 'integer',
    required: false,
    minimum: 0,
    description: 'How long, in hours, a cached tag is served before the upstream is asked again (0: never).',
    example: 72,
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(MAX_CACHE_VALIDITY_HOURS)
  cache_validity_hours?: number;

  @ApiProperty({ type: [String], required: false, maxItems: MAX_MIRROR_HOSTS, description: MIRROR_HOSTS_DESCRIPTION, example: ['docker.io'] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MAX_MIRROR_HOSTS)
  @IsString({ each: true })
  @MaxLength(255, { each: true })
  mirror_hosts?: string[];
}

export class UpstreamListQueryDto extends PageQueryDto {
  @ApiProperty({ required: false, description: 'Filter by upstream name (case-insensitive substring).', example: 'docker' })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_UPSTREAM_NAME_LENGTH)
  upstream_name?: string;
}

/** Test an upstream that does not exist yet (group-level test). */
export class UpstreamTestDto {
  @ApiProperty({ description: 'The URL of the upstream registry.', example: 'https://registry-1.docker.io' })
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_URL_INPUT_LENGTH)
  url: string;

  @ApiProperty({ required: false, description: 'The username (with password, or neither).', maxLength: MAX_CREDENTIAL_LENGTH, example: 'user' })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  username?: string;

  @ApiProperty({
    required: false,
    description: 'The password (with username, or neither).',
    maxLength: MAX_CREDENTIAL_LENGTH,
    example: 'secret',
    writeOnly: true,
  })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  password?: string;
}

/** Test an existing upstream, optionally with another url and/or other credentials. */
export class UpstreamTestOverridesDto {
  @ApiProperty({
    required: false,
    description: 'Test this URL instead of the configured one (without the stored credentials).',
    example: 'https://registry-1.docker.io',
  })
  @IsOptional()
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_URL_INPUT_LENGTH)
  url?: string;

  @ApiProperty({ required: false, description: 'Test with this username (with password).', maxLength: MAX_CREDENTIAL_LENGTH, example: 'newuser' })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  username?: string;

  @ApiProperty({
    required: false,
    description: 'Test with this password (with username).',
    maxLength: MAX_CREDENTIAL_LENGTH,
    example: 'newpass',
    writeOnly: true,
  })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_CREDENTIAL_LENGTH)
  password?: string;
}

export class UpstreamTestResponseDto {
  @ApiProperty({ description: 'True when the upstream answered 2xx or 404 (reachable, credentials accepted).', example: false })
  success: boolean;

  @ApiProperty({ required: false, description: 'Why the test failed.', example: 'Error: 401 - Unauthorized' })
  result?: string;
}

export class RegistryUpstreamCreateDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the virtual registry.', example: 1 })
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(2_147_483_647)
  registry_id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the upstream (of the same group).', example: 2 })
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(2_147_483_647)
  upstream_id: number;
}

export class RegistryUpstreamUpdateDto {
  @ApiProperty({
    type: 'integer',
    description: 'The new position (1 is asked first); others shift. A position past the end moves it last.',
    minimum: 1,
    example: 1,
  })
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  position: number;
}

export class UpstreamRegistryLinkDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the registry upstream association.', example: 1 })
  id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the virtual registry.', example: 1 })
  registry_id: number;

  @ApiProperty({ type: 'integer', description: 'The position of the upstream in that registry.', example: 1 })
  position: number;

  static from(link: RegistryUpstream): UpstreamRegistryLinkDto {
    return { id: link.id, registry_id: link.registryId, position: link.position };
  }
}

export class RegistryUpstreamResponseDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the registry upstream association.', example: 5 })
  id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the virtual registry.', example: 1 })
  registry_id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the upstream.', example: 2 })
  upstream_id: number;

  @ApiProperty({ type: 'integer', description: 'The position of the upstream in the registry.', example: 2 })
  position: number;

  static from(link: RegistryUpstream): RegistryUpstreamResponseDto {
    return Object.assign(new RegistryUpstreamResponseDto(), {
      id: link.id,
      registry_id: link.registryId,
      upstream_id: link.upstreamId,
      position: link.position,
    });
  }
}

export class UpstreamResponseDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the upstream.', example: 1 })
  id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the group that owns the upstream.', example: 5 })
  group_id: number;

  @ApiProperty({ description: 'The name of the upstream.', example: 'Docker Hub' })
  name: string;

  @ApiProperty({ description: 'The description of the upstream.', nullable: true, type: String, example: 'Docker Hub registry' })
  description: string | null;

  @ApiProperty({ description: 'The normalised URL of the upstream registry.', example: 'https://registry-1.docker.io' })
  url: string;

  @ApiProperty({ description: 'The username used with the upstream (the password is never returned).', nullable: true, type: String, example: 'user' })
  username: string | null;

  @ApiProperty({ type: 'integer', description: 'Hours a cached tag is served before the upstream is asked again (0: never).', example: 24 })
  cache_validity_hours: number;

  @ApiProperty({ type: [String], description: MIRROR_HOSTS_DESCRIPTION, example: ['docker.io'] })
  mirror_hosts: string[];

  @ApiProperty({ description: 'When the upstream was created.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  created_at: string;

  @ApiProperty({ description: 'When the upstream was last updated.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  updated_at: string;

  /** Only the fields GitLab returns: never the password, its ciphertext or key id. */
  static from(upstream: Upstream): UpstreamResponseDto {
    return Object.assign(new UpstreamResponseDto(), {
      id: upstream.id,
      group_id: upstream.groupId,
      name: upstream.name,
      description: upstream.description,
      url: upstream.url,
      username: upstream.username,
      cache_validity_hours: upstream.cacheValidityHours,
      mirror_hosts: upstream.mirrorHosts,
      created_at: upstream.createdAt.toISOString(),
      updated_at: upstream.updatedAt.toISOString(),
    });
  }
}

/** An upstream as listed under (or created in) a registry: with its association to that registry. */
export class RegistryUpstreamListItemDto extends UpstreamResponseDto {
  @ApiProperty({ type: UpstreamRegistryLinkDto, description: 'The association with the registry.' })
  registry_upstream: UpstreamRegistryLinkDto;

  static fromLinked(upstream: Upstream, link: RegistryUpstream): RegistryUpstreamListItemDto {
    return Object.assign(new RegistryUpstreamListItemDto(), UpstreamResponseDto.from(upstream), {
      registry_upstream: UpstreamRegistryLinkDto.from(link),
    });
  }
}

/** Extension (not in GitLab's API): the upstream's rate-limit budget as last seen by the replica that answers. */
export class UpstreamRateLimitDto {
  @ApiProperty({ type: 'integer', nullable: true, description: 'The last `ratelimit-limit` the upstream sent (requests per window).', example: 100 })
  limit: number | null;

  @ApiProperty({ type: 'integer', nullable: true, description: 'The last `ratelimit-remaining` the upstream sent.', example: 76 })
  remaining: number | null;

  @ApiProperty({ type: 'integer', nullable: true, description: 'The window of the limit, in seconds (`;w=`).', example: 21600 })
  window_seconds: number | null;

  @ApiProperty({
    type: String,
    nullable: true,
    description: 'The last `docker-ratelimit-source` (the address or account the budget is counted for).',
    example: '203.0.113.7',
  })
  source: string | null;

  @ApiProperty({
    type: String,
    nullable: true,
    format: 'date-time',
    description: 'When these values were last seen on an answer of the upstream.',
    example: '2026-12-03T19:00:00.000Z',
  })
  seen_at: string | null;

  @ApiProperty({
    type: String,
    nullable: true,
    format: 'date-time',
    description: 'GETs are not sent to the upstream before this moment (it answered 429 with Retry-After).',
    example: null,
  })
  paused_until: string | null;
}

/** Extension: the upstream's circuit breaker on the replica that answers (state is per replica). */
export class UpstreamCircuitBreakerDto {
  @ApiProperty({
    enum: ['closed', 'open', 'half-open'],
    description: 'closed: asked normally; open: skipped until `open_until`; half-open: one probe request tests it.',
    example: 'closed',
  })
  state: 'closed' | 'open' | 'half-open';

  @ApiProperty({ type: 'integer', description: 'Connection failures, timeouts or 5xx answers in a row.', example: 0 })
  consecutive_failures: number;

  @ApiProperty({ type: String, nullable: true, format: 'date-time', description: 'When the breaker last opened.', example: null })
  opened_at: string | null;

  @ApiProperty({ type: String, nullable: true, format: 'date-time', description: 'When an open breaker lets the next probe through.', example: null })
  open_until: string | null;

  @ApiProperty({ type: 'integer', description: 'The current cool-down in milliseconds (doubles while probes fail).', example: 30000 })
  cooldown_ms: number;
}

export class UpstreamDetailResponseDto extends UpstreamResponseDto {
  @ApiProperty({ type: [UpstreamRegistryLinkDto], description: 'The registries this upstream is associated with.' })
  registry_upstreams: UpstreamRegistryLinkDto[];

  @ApiProperty({
    type: UpstreamRateLimitDto,
    description: 'Extension: the rate-limit budget the upstream last announced (Docker Hub headers), as seen by this replica.',
  })
  rate_limit: UpstreamRateLimitDto;

  @ApiProperty({ type: UpstreamCircuitBreakerDto, description: "Extension: the upstream's circuit breaker on this replica." })
  circuit_breaker: UpstreamCircuitBreakerDto;

  static fromDetail(upstream: Upstream, links: RegistryUpstream[], health: UpstreamHealthSnapshot): UpstreamDetailResponseDto {
    const iso = (d: Date | undefined) => (d ? d.toISOString() : null);
    const { rateLimit, breaker } = health;
    return Object.assign(new UpstreamDetailResponseDto(), UpstreamResponseDto.from(upstream), {
      registry_upstreams: links.map(UpstreamRegistryLinkDto.from),
      rate_limit: {
        limit: rateLimit.limit ?? null,
        remaining: rateLimit.remaining ?? null,
        window_seconds: rateLimit.windowSeconds ?? null,
        source: rateLimit.source ?? null,
        seen_at: iso(rateLimit.seenAt),
        paused_until: rateLimit.pausedUntil && rateLimit.pausedUntil.getTime() > Date.now() ? rateLimit.pausedUntil.toISOString() : null,
      },
      circuit_breaker: {
        state: breaker.state,
        consecutive_failures: breaker.consecutiveFailures,
        opened_at: iso(breaker.openedAt),
        open_until: iso(breaker.openUntil),
        cooldown_ms: breaker.cooldownMs,
      },
    });
  }
}
