import { Body, Controller, Delete, Get, HttpCode, HttpStatus, Param, Patch, Post, Query, UseInterceptors } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { Actor } from '../accounts/actor.js';
import { ApiAdminAuth } from '../accounts/api-admin-auth.decorator.js';
import { CurrentActor } from '../accounts/current-actor.decorator.js';
import { ApiPaginatedResponse } from '../common/api-paginated-response.decorator.js';
import { Page, PageHeadersInterceptor } from '../common/pagination.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import {
  RegistryUpstreamListItemDto,
  UpstreamCreateDto,
  UpstreamDetailResponseDto,
  UpstreamListQueryDto,
  UpstreamResponseDto,
  UpstreamTestDto,
  UpstreamTestOverridesDto,
  UpstreamTestResponseDto,
  UpstreamUpdateDto,
} from './upstream.dto.js';
import { UpstreamHealth } from './client/upstream-health.js';
import { UpstreamsService } from './upstreams.service.js';

const REGISTRY_ID = { name: 'id', description: 'The ID of the virtual registry.', example: 1 };
const UPSTREAM_ID = { name: 'id', description: 'The ID of the upstream.', example: 1 };
const GROUP_ID = { name: 'id', description: 'The group ID or full group path.', example: '5' };

/** GitLab's container virtual registry API: upstreams. */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The group, registry or upstream does not exist, or the caller cannot see it.' })
@Controller('api/v4')
export class UpstreamsController {
  constructor(
    private readonly upstreams: UpstreamsService,
    private readonly health: UpstreamHealth,
  ) {}

  @Get('groups/:id/-/virtual_registries/container/upstreams')
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: 'List all upstreams of a group', description: 'Needs the Reporter role or higher.' })
  @ApiParam(GROUP_ID)
  @ApiPaginatedResponse(UpstreamResponseDto)
  async listForGroup(@CurrentActor() actor: Actor, @Param('id') group: string, @Query() query: UpstreamListQueryDto): Promise<Page<UpstreamResponseDto>> {
    return (await this.upstreams.listForGroup(actor, group, Page.request(query), { upstreamName: query.upstream_name })).map(UpstreamResponseDto.from);
  }

  @Post('groups/:id/-/virtual_registries/container/upstreams/test')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({
    summary: 'Test a connection before creating an upstream',
    description:
      'HEADs library/alpine/manifests/latest on the URL with the given credentials. 2xx or 404 is a success. ' + 'Needs the Maintainer role or higher.',
  })
  @ApiParam(GROUP_ID)
  @ApiOkResponse({ type: UpstreamTestResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid or refused URL, or only one of username and password.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the group.' })
  testNew(@CurrentActor() actor: Actor, @Param('id') group: string, @Body() body: UpstreamTestDto): Promise<UpstreamTestResponseDto> {
    return this.upstreams.testNew(actor, group, body);
  }

  @Get('virtual_registries/container/registries/:id/upstreams')
  @ApiOperation({ summary: 'List the upstreams of a virtual registry', description: 'In position order, each with its registry_upstream.' })
  @ApiParam(REGISTRY_ID)
  @ApiOkResponse({ type: [RegistryUpstreamListItemDto] })
  async listForRegistry(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Registry Not Found')) registryId: number,
  ): Promise<RegistryUpstreamListItemDto[]> {
    return (await this.upstreams.listForRegistry(actor, registryId)).map(({ upstream, link }) => RegistryUpstreamListItemDto.fromLinked(upstream, link));
  }

  @Post('virtual_registries/container/registries/:id/upstreams')
  @ApiOperation({
    summary: 'Create an upstream in a virtual registry',
    description: 'It is appended to the registry (last position). At most UPSTREAMS_PER_REGISTRY (5) per registry.',
  })
  @ApiParam(REGISTRY_ID)
  @ApiCreatedResponse({ type: RegistryUpstreamListItemDto })
  @ApiBadRequestResponse({ description: 'Invalid field, refused URL, only one of username and password, or the registry is full.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async create(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Registry Not Found')) registryId: number,
    @Body() body: UpstreamCreateDto,
  ): Promise<RegistryUpstreamListItemDto> {
    const { upstream, link } = await this.upstreams.createOrUpdate(actor, {
      registryId,
      url: body.url,
      name: body.name,
      description: body.description,
      username: body.username,
      password: body.password,
      cacheValidityHours: body.cache_validity_hours,
      mirrorHosts: body.mirror_hosts,
    });
    return RegistryUpstreamListItemDto.fromLinked(upstream, link);
  }

  @Get('virtual_registries/container/upstreams/:id')
  @ApiOperation({
    summary: 'Get an upstream',
    description:
      'With the registries it is associated with, and (extensions) its last known rate-limit budget and its circuit breaker ' +
      'as the answering replica sees them.',
  })
  @ApiParam(UPSTREAM_ID)
  @ApiOkResponse({ type: UpstreamDetailResponseDto })
  async get(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Upstream Not Found')) id: number): Promise<UpstreamDetailResponseDto> {
    const { upstream, links } = await this.upstreams.detail(actor, id);
    return UpstreamDetailResponseDto.fromDetail(upstream, links, this.health.snapshot(upstream.id));
  }

  @Patch('virtual_registries/container/upstreams/:id')
  @ApiOperation({
    summary: 'Update an upstream',
    description: 'Provide at least one field. A new url clears the stored credentials unless username and password are given too.',
  })
  @ApiParam(UPSTREAM_ID)
  @ApiOkResponse({ type: UpstreamResponseDto })
  @ApiBadRequestResponse({ description: 'Nothing to update, an invalid field, or a refused URL.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the upstream.' })
  async update(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Upstream Not Found')) id: number,
    @Body() body: UpstreamUpdateDto,
  ): Promise<UpstreamResponseDto> {
    const upstream = await this.upstreams.createOrUpdate(actor, {
      id,
      url: body.url,
      name: body.name,
      description: body.description,
      username: body.username,
      password: body.password,
      cacheValidityHours: body.cache_validity_hours,
      mirrorHosts: body.mirror_hosts,
    });
    return UpstreamResponseDto.from(upstream);
  }

  @Delete('virtual_registries/container/upstreams/:id')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ summary: 'Delete an upstream', description: 'Removes it from every registry (closing the gaps) with its cache entries.' })
  @ApiParam(UPSTREAM_ID)
  @ApiNoContentResponse({ description: 'Deleted.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not delete the upstream.' })
  async delete(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Upstream Not Found')) id: number): Promise<void> {
    await this.upstreams.delete(actor, id);
  }

  @Post('virtual_registries/container/upstreams/:id/test')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({
    summary: 'Test the connection to an upstream',
    description:
      'HEADs the first cached path (or library/alpine/manifests/latest) with the stored or the given credentials. ' +
      'A url override is tested without the stored credentials. 2xx or 404 is a success.',
  })
  @ApiParam(UPSTREAM_ID)
  @ApiOkResponse({ type: UpstreamTestResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid or refused URL, or only one of username and password.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the upstream.' })
  test(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Upstream Not Found')) id: number,
    @Body() body: UpstreamTestOverridesDto,
  ): Promise<UpstreamTestResponseDto> {
    return this.upstreams.test(actor, id, body ?? {});
  }
}
