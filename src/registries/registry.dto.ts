import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsBoolean, IsNotEmpty, IsOptional, IsString, MaxLength, ValidateIf } from 'class-validator';
import { PageQueryDto } from '../common/pagination.js';
import type { Registry } from './registry.entity.js';

export const MAX_REGISTRY_NAME_LENGTH = 255;
export const MAX_DESCRIPTION_LENGTH = 1024;

const ANONYMOUS_PULL_DESCRIPTION =
  'Extension (GitLab has no such field): anyone may pull from this registry without credentials, e.g. a cluster-internal mirror. ' +
  'Only a group owner may set it; off by default. The token endpoint then issues pull-only tokens for it to anonymous callers.';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

export class RegistryCreateDto {
  @ApiProperty({
    description: 'The name of the virtual registry (unique in its group).',
    maxLength: MAX_REGISTRY_NAME_LENGTH,
    example: 'my-container-virtual-registry',
  })
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_REGISTRY_NAME_LENGTH)
  name: string;

  @ApiProperty({
    type: String,
    required: false,
    nullable: true,
    description: 'The description of the virtual registry.',
    maxLength: MAX_DESCRIPTION_LENGTH,
    example: 'My container virtual registry',
  })
  @IsOptional()
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  @ApiProperty({ required: false, default: false, description: ANONYMOUS_PULL_DESCRIPTION, example: false })
  @IsOptional()
  @IsBoolean()
  anonymous_pull?: boolean;
}

/** At least one of `name`, `description` or `anonymous_pull` must be given. */
export class RegistryUpdateDto {
  @ApiProperty({ required: false, description: 'The name of the virtual registry.', maxLength: MAX_REGISTRY_NAME_LENGTH, example: 'docker-hub-cache' })
  @IsOptional()
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @MaxLength(MAX_REGISTRY_NAME_LENGTH)
  name?: string;

  @ApiProperty({
    type: String,
    required: false,
    nullable: true,
    description: 'The description of the virtual registry (null or "" clears it).',
    maxLength: MAX_DESCRIPTION_LENGTH,
    example: 'Docker Hub through the office cache',
  })
  @ValidateIf((o: RegistryUpdateDto) => o.description !== undefined && o.description !== null)
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  @ApiProperty({ required: false, default: false, description: ANONYMOUS_PULL_DESCRIPTION, example: false })
  @IsOptional()
  @IsBoolean()
  anonymous_pull?: boolean;
}

export class RegistryListQueryDto extends PageQueryDto {}

export class RegistryResponseDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the virtual registry.', example: 1 })
  id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the group that owns the registry.', example: 5 })
  group_id: number;

  @ApiProperty({ description: 'The name of the virtual registry.', example: 'my-container-virtual-registry' })
  name: string;

  @ApiProperty({ description: 'The description of the virtual registry.', nullable: true, type: String, example: 'My container virtual registry' })
  description: string | null;

  @ApiProperty({ description: ANONYMOUS_PULL_DESCRIPTION, example: false })
  anonymous_pull: boolean;

  @ApiProperty({ description: 'When the registry was created.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  created_at: string;

  @ApiProperty({ description: 'When the registry was last updated.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  updated_at: string;

  static from(registry: Registry): RegistryResponseDto {
    return Object.assign(new RegistryResponseDto(), {
      id: registry.id,
      group_id: registry.groupId,
      name: registry.name,
      description: registry.description,
      anonymous_pull: registry.anonymousPull,
      created_at: registry.createdAt.toISOString(),
      updated_at: registry.updatedAt.toISOString(),
    });
  }
}

export class RegistryUpstreamSummaryDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the registry upstream association.', example: 2 })
  id: number;

  @ApiProperty({ type: 'integer', description: 'The position of the upstream in the registry (1 is asked first).', example: 1 })
  position: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the upstream.', example: 2 })
  upstream_id: number;
}

export class RegistryDetailResponseDto extends RegistryResponseDto {
  @ApiProperty({ type: [RegistryUpstreamSummaryDto], description: 'The upstreams of the registry, in position order.' })
  registry_upstreams: RegistryUpstreamSummaryDto[];

  static fromDetail(registry: Registry, links: { id: number; position: number; upstreamId: number }[]): RegistryDetailResponseDto {
    return Object.assign(new RegistryDetailResponseDto(), RegistryResponseDto.from(registry), {
      registry_upstreams: links.map((l) => ({ id: l.id, position: l.position, upstream_id: l.upstreamId })),
    });
  }
}
