import { ApiProperty } from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';
import { PageQueryDto } from '../common/pagination.js';
import { encodeCacheEntryId } from './cache-entry-id.js';
import type { CacheEntry } from './cache-entry.entity.js';

export class CacheEntryListQueryDto extends PageQueryDto {
  @ApiProperty({ required: false, description: 'Only entries whose relative path contains this text (case-insensitive).', example: 'library/nginx' })
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  search?: string;
}

export class CacheEntryResponseDto {
  @ApiProperty({
    description: 'URL-safe Base64 of "<upstream_id> <relative_path>"; use it to delete the entry.',
    example: 'MSAvbGlicmFyeS9hbHBpbmUvbWFuaWZlc3RzL2xhdGVzdA==',
  })
  id: string;

  @ApiProperty({ type: 'integer', description: 'The ID of the group.', example: 5 })
  group_id: number;

  @ApiProperty({ type: 'integer', description: 'The ID of the upstream the content came from.', example: 1 })
  upstream_id: number;

  @ApiProperty({ description: 'The registry-relative path of the cached response.', example: '/library/alpine/manifests/latest' })
  relative_path: string;

  @ApiProperty({ description: 'The content digest.', example: 'sha256:8d4f4d4ab4fa0a9b10ec6ba9d5c2e4fa7cbf9f1b1b9f8f1c1e0a3b3b1d8b5b2a' })
  digest: string;

  @ApiProperty({ type: 'integer', description: 'Size in bytes.', example: 2048 })
  size: number;

  @ApiProperty({ description: 'The media type, as the upstream sent it.', example: 'application/vnd.oci.image.index.v1+json' })
  content_type: string;

  @ApiProperty({ description: 'The ETag the upstream sent.', nullable: true, type: String, example: '"686897696a7c876b7e"' })
  upstream_etag: string | null;

  @ApiProperty({ description: 'When the upstream last confirmed this content.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  upstream_checked_at: string;

  @ApiProperty({ type: 'integer', description: 'How many times the entry was served.', example: 5 })
  downloads_count: number;

  @ApiProperty({ description: 'When the entry was last served.', format: 'date-time', example: '2024-06-05T14:58:32.855Z' })
  downloaded_at: string;

  @ApiProperty({
    description: 'SHA-1 of the bytes, when known.',
    nullable: true,
    type: String,
    required: false,
    example: '74d101856d26f2db17b39bd22d3204021eb0bf7d',
  })
  file_sha1: string | null;

  @ApiProperty({ description: 'When the entry was created.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  created_at: string;

  @ApiProperty({ description: 'When the entry was last updated.', format: 'date-time', example: '2024-05-30T12:28:27.855Z' })
  updated_at: string;

  static from(entry: CacheEntry): CacheEntryResponseDto {
    return Object.assign(new CacheEntryResponseDto(), {
      id: encodeCacheEntryId(entry.upstreamId, entry.relativePath),
      group_id: entry.groupId,
      upstream_id: entry.upstreamId,
      relative_path: entry.relativePath,
      digest: entry.digest,
      size: entry.size,
      content_type: entry.contentType,
      upstream_etag: entry.upstreamEtag,
      upstream_checked_at: entry.upstreamCheckedAt.toISOString(),
      downloads_count: entry.downloadsCount,
      downloaded_at: entry.downloadedAt.toISOString(),
      file_sha1: entry.fileSha1,
      created_at: entry.createdAt.toISOString(),
      updated_at: entry.updatedAt.toISOString(),
    });
  }
}
