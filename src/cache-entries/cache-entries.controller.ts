import type { FastifyRequest } from 'fastify';
import { Controller, Delete, Get, HttpCode, HttpStatus, Param, Query, Req, UseInterceptors } from '@nestjs/common';
import { ApiForbiddenResponse, ApiNoContentResponse, ApiNotFoundResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { Actor } from '../accounts/actor.js';
import { ApiAdminAuth } from '../accounts/api-admin-auth.decorator.js';
import { CurrentActor } from '../accounts/current-actor.decorator.js';
import { ApiPaginatedResponse } from '../common/api-paginated-response.decorator.js';
import { Page, PageHeadersInterceptor } from '../common/pagination.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import { CacheEntriesService } from './cache-entries.service.js';
import { CacheEntryListQueryDto, CacheEntryResponseDto } from './cache-entry.dto.js';

/** GitLab's container virtual registry API: cache entries and cache purges. */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The registry, upstream or cache entry does not exist, or the caller cannot see it.' })
@Controller('api/v4/virtual_registries/container')
export class CacheEntriesController {
  constructor(private readonly cacheEntries: CacheEntriesService) {}

  @Get('upstreams/:id/cache_entries')
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: 'List the cache entries of an upstream', description: 'Live entries, by relative path.' })
  @ApiParam({ name: 'id', description: 'The ID of the upstream.', example: 1 })
  @ApiPaginatedResponse(CacheEntryResponseDto)
  async list(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Upstream Not Found')) upstreamId: number,
    @Query() query: CacheEntryListQueryDto,
  ): Promise<Page<CacheEntryResponseDto>> {
    return (await this.cacheEntries.list(actor, upstreamId, Page.request(query), query.search)).map(CacheEntryResponseDto.from);
  }

  @Delete('cache_entries/*')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({
    summary: 'Delete a cache entry',
    description: 'Marks it for destruction: it is no longer served, and the next pull fetches it again.',
  })
  // The route is a wildcard (the id may contain "/" in GitLab's standard-alphabet form); OpenAPI names it `path`.
  @ApiParam({
    name: 'path',
    description: 'The cache entry id: URL-safe Base64 of "<upstream_id> <relative_path>".',
    example: 'MSAvbGlicmFyeS9hbHBpbmUvbWFuaWZlc3RzL2xhdGVzdA==',
  })
  @ApiNoContentResponse({ description: 'Marked for destruction.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the upstream.' })
  async delete(@CurrentActor() actor: Actor, @Req() request: FastifyRequest): Promise<void> {
    // The wildcard is read from the request: @Param('*') would document a second, bogus `*` parameter.
    const id = (request.params as Record<string, string>)['*'];
    await this.cacheEntries.deleteOne(actor, id);
  }

  @Delete('upstreams/:id/cache')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ summary: 'Delete the cache of an upstream', description: 'Schedules every cache entry of the upstream for destruction (a background job).' })
  @ApiParam({ name: 'id', description: 'The ID of the upstream.', example: 1 })
  @ApiNoContentResponse({ description: 'Scheduled.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the upstream.' })
  async purgeUpstream(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Upstream Not Found')) id: number): Promise<void> {
    await this.cacheEntries.purgeUpstream(actor, id);
  }

  @Delete('registries/:id/cache')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({
    summary: 'Delete the cache of a virtual registry',
    description: 'Schedules the cache entries of the upstreams used by this registry only for destruction (a background job).',
  })
  @ApiParam({ name: 'id', description: 'The ID of the virtual registry.', example: 1 })
  @ApiNoContentResponse({ description: 'Scheduled.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async purgeRegistry(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Registry Not Found')) id: number): Promise<void> {
    await this.cacheEntries.purgeRegistry(actor, id);
  }
}
