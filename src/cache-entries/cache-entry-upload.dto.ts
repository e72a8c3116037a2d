import { ApiProperty } from '@nestjs/swagger';
import { IsInt, IsOptional, IsString, MaxLength, Min } from 'class-validator';

export class CacheEntryAuthorizeUploadDto {
  @ApiProperty({
    description: 'The registry-relative path the upload will be cached as.',
    example: '/library/alpine/blobs/sha256:8d4f4d4ab4fa0a9b10ec6ba9d5c2e4fa7cbf9f1b1b9f8f1c1e0a3b3b1d8b5b2a',
  })
  @IsString()
  @MaxLength(1024)
  relative_path: string;

  @ApiProperty({
    required: false,
    type: 'integer',
    description: 'Size of the body to upload, in bytes; refused up front when over the limit.',
    example: 3145728,
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  size?: number;
}

export class CacheEntryUploadQueryDto {
  @ApiProperty({
    description: 'The registry-relative path to cache the body as: `/<name>/blobs/<digest>` or `/<name>/manifests/<tag|digest>`.',
    example: '/library/alpine/manifests/latest',
  })
  @IsString()
  @MaxLength(1024)
  relative_path: string;
}

export class CacheEntryUploadAuthorizationDto {
  @ApiProperty({
    description: 'Where to send the body (POST, raw bytes).',
    example: '/api/v4/virtual_registries/container/upstreams/1/cache_entries/upload?relative_path=%2Flibrary%2Falpine%2Fmanifests%2Flatest',
  })
  upload_url: string;

  @ApiProperty({ example: 'POST' })
  method: string;

  @ApiProperty({ description: 'The normalised relative path.', example: '/library/alpine/manifests/latest' })
  relative_path: string;

  @ApiProperty({ description: 'The digest the body must have (null for a manifest by tag: it is computed).', nullable: true, type: String, example: null })
  digest: string | null;

  @ApiProperty({
    type: 'integer',
    description: 'Largest body accepted, in bytes (MAX_CACHED_FILE_SIZE, or MAX_MANIFEST_SIZE for manifests).',
    example: 5368709120,
  })
  max_size: number;

  @ApiProperty({
    description: 'Content-Type to send: application/octet-stream for blobs, the manifest media type for manifests.',
    example: 'application/octet-stream',
  })
  content_type: string;
}
