import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsOptional, IsString, MaxLength, ValidateNested } from 'class-validator';
import type { PrefetchWithImages } from './prefetch.service.js';
import { PrefetchImageStatus, type PrefetchImage } from './prefetch.entity.js';

export const MAX_PREFETCH_IMAGES = 100;
const MAX_PLATFORMS = 32;

export class PrefetchImageRequestDto {
  @ApiProperty({
    description: 'The image in this registry: `<name>:<tag>`, `<name>@sha256:<hex>` or `<name>` (tag `latest`), without a host.',
    maxLength: 512,
    example: 'library/alpine:3.20',
  })
  @IsString()
  @MaxLength(512)
  image: string;

  @ApiProperty({
    type: [String],
    required: false,
    description: 'For an index: the platforms to fill (`os/arch` or `os/arch/variant`). Default: every manifest of the index.',
    example: ['linux/amd64', 'linux/arm64'],
  })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MAX_PLATFORMS)
  @IsString({ each: true })
  @MaxLength(64, { each: true })
  platforms?: string[];
}

export class PrefetchCreateDto {
  @ApiProperty({ type: [PrefetchImageRequestDto], description: `The images to fill the cache with (1 to ${MAX_PREFETCH_IMAGES}).` })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_PREFETCH_IMAGES)
  @ValidateNested({ each: true })
  @Type(() => PrefetchImageRequestDto)
  images: PrefetchImageRequestDto[];
}

export class PrefetchImageResponseDto {
  @ApiProperty({ description: 'The repository in the registry.', example: 'library/alpine' })
  repository: string;

  @ApiProperty({ description: 'The tag or digest asked for.', example: '3.20' })
  reference: string;

  @ApiProperty({ type: [String], nullable: true, description: 'The platforms asked for; null: every platform of an index.', example: null })
  platforms: string[] | null;

  @ApiProperty({
    enum: Object.values(PrefetchImageStatus),
    description: 'pending (queued), running, done (in the cache), failed (see reason).',
    example: 'done',
  })
  status: PrefetchImageStatus;

  @ApiProperty({
    type: String,
    nullable: true,
    description: 'Why it failed: the answer a pull would have had (e.g. the upstreams answered 404 MANIFEST_UNKNOWN).',
    example: null,
  })
  reason: string | null;

  @ApiProperty({ type: 'integer', description: 'Manifests (an index and its children) in the cache so far.', example: 3 })
  manifests: number;

  @ApiProperty({ type: 'integer', description: 'Blobs (configs and layers) in the cache so far.', example: 4 })
  blobs: number;

  @ApiProperty({ type: 'integer', description: 'Bytes of those blobs.', example: 7340032 })
  bytes: number;

  @ApiProperty({ format: 'date-time', description: 'When its progress last changed.', example: '2026-12-03T19:00:00.000Z' })
  updated_at: string;

  static from(image: PrefetchImage): PrefetchImageResponseDto {
    return Object.assign(new PrefetchImageResponseDto(), {
      repository: image.repository,
      reference: image.reference,
      platforms: image.platforms,
      status: image.status,
      reason: image.reason,
      manifests: image.manifests,
      blobs: image.blobs,
      bytes: image.bytes,
      updated_at: image.updatedAt.toISOString(),
    });
  }
}

export class PrefetchResponseDto {
  @ApiProperty({ type: 'integer', description: 'The ID of the prefetch.', example: 1 })
  id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the virtual registry.', example: 1 })
  registry_id: number;

  @ApiProperty({
    enum: ['pending', 'done', 'failed'],
    description: 'pending while an image is pending or running; then failed if one failed, else done.',
    example: 'pending',
  })
  status: 'pending' | 'done' | 'failed';

  @ApiProperty({ format: 'date-time', description: 'When the prefetch was asked for.', example: '2026-12-03T19:00:00.000Z' })
  created_at: string;

  @ApiProperty({ type: [PrefetchImageResponseDto], description: 'Each image, in the order asked.' })
  images: PrefetchImageResponseDto[];

  static from({ prefetch, images }: PrefetchWithImages): PrefetchResponseDto {
    const unfinished = images.some((i) => i.status === PrefetchImageStatus.PENDING || i.status === PrefetchImageStatus.RUNNING);
    const failed = images.some((i) => i.status === PrefetchImageStatus.FAILED);
    return Object.assign(new PrefetchResponseDto(), {
      id: prefetch.id,
      registry_id: prefetch.registryId,
      status: unfinished ? 'pending' : failed ? 'failed' : 'done',
      created_at: prefetch.createdAt.toISOString(),
      images: images.map(PrefetchImageResponseDto.from),
    });
  }
}
