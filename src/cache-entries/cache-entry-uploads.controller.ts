import { Body, Controller, Headers, HttpCode, HttpStatus, Param, Post, Query, Req, Res, UnsupportedMediaTypeException } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import type { Actor } from '../accounts/actor.js';
import { ApiAdminAuth } from '../accounts/api-admin-auth.decorator.js';
import { CurrentActor } from '../accounts/current-actor.decorator.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import { CacheEntryAuthorizeUploadDto, CacheEntryUploadAuthorizationDto, CacheEntryUploadQueryDto } from './cache-entry-upload.dto.js';
import { CacheEntryUploadService } from './cache-entry-upload.service.js';
import { CacheEntryResponseDto } from './cache-entry.dto.js';

/** Pre-seeding a cache (air-gapped sites, the background worker): authorize, then upload the bytes. */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@Controller('api/v4/virtual_registries/container/upstreams/:id/cache_entries')
export class CacheEntryUploadsController {
  constructor(private readonly uploads: CacheEntryUploadService) {}

  @Post('authorize_upload')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({
    summary: 'Authorize a cache-entry upload',
    description: 'Where to send the body, its size limit and the digest it must have. Maintainer or above.',
  })
  @ApiParam({ name: 'id', description: 'The ID of the upstream.', example: 1 })
  @ApiOkResponse({ type: CacheEntryUploadAuthorizationDto })
  authorize(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Upstream Not Found')) upstreamId: number,
    @Body() body: CacheEntryAuthorizeUploadDto,
  ): Promise<CacheEntryUploadAuthorizationDto> {
    return this.uploads.authorize(actor, upstreamId, body.relative_path, body.size);
  }

  @Post('upload')
  @ApiOperation({
    summary: 'Upload a cache entry',
    description:
      'Creates or updates the cache entry of `relative_path` from the raw body (streamed, verified against the digest in the path; ' +
      'a manifest by tag gets its digest computed and checked against `Docker-Content-Digest` when sent). Maintainer or above.',
  })
  @ApiParam({ name: 'id', description: 'The ID of the upstream.', example: 1 })
  @ApiConsumes('application/octet-stream', 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  @ApiCreatedResponse({ type: CacheEntryResponseDto })
  async upload(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Upstream Not Found')) upstreamId: number,
    @Query() query: CacheEntryUploadQueryDto,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
    @Headers('content-type') contentType?: string,
    @Headers('docker-content-digest') announcedDigest?: string,
  ): Promise<CacheEntryResponseDto> {
    try {
      if (!(request.body instanceof Readable)) {
        throw new UnsupportedMediaTypeException('415 send the raw bytes as application/octet-stream or a manifest media type');
      }
      const entry = await this.uploads.upload(actor, upstreamId, { relativePath: query.relative_path, body: request.body, contentType, announcedDigest });
      return CacheEntryResponseDto.from(entry);
    } catch (err) {
      // Refused before the whole body was read: the rest cannot be skipped on a kept-alive connection.
      if (!request.raw.complete) void reply.header('connection', 'close');
      throw err;
    }
  }
}
