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
import type { Actor } from '../auth/actor.js';
import { ApiAdminAuth } from '../auth/api-admin-auth.decorator.js';
import { CurrentActor } from '../auth/current-actor.decorator.js';
import { ApiPaginatedResponse } from './api-paginated-response.decorator.js';
import { Page, PageHeadersInterceptor } from '../accounts/pagination.js';
import { RegistriesService } from './registries.service.js';
import {
  RegistryCreateDto,
  RegistryDetailResponseDto,
  RegistryListQueryDto,
  RegistryResponseDto,
  RegistryUpdateDto,
} from './registry.dto.js';
import { ResourceIdPipe } from '../accounts/resource-id.pipe.js';

/** GitLab's container virtual registry API: registries. */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The group or registry does not exist, or the caller cannot see it.' })
@Controller('api/v4')
export class RegistriesController {
  constructor(private readonly registries: RegistriesService) {}

  @Get('groups/:id/-/virtual_registries/container/registries')
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: 'List all virtual registries of a group', description: 'Needs the Reporter role or higher.' })
  @ApiParam({ name: 'id', description: 'The group ID or full group path.', example: '5' })
  @ApiPaginatedResponse(RegistryResponseDto)
  async list(
    @CurrentActor() actor: Actor,
    @Param('id') group: string,
    @Query() query: RegistryListQueryDto,
  ): Promise<Page<RegistryResponseDto>> {
    return (await this.registries.listForGroup(actor, group, Page.request(query))).map(RegistryResponseDto.from);
  }

  @Post('groups/:id/-/virtual_registries/container/registries')
  @ApiOperation({ summary: 'Create a virtual registry', description: 'Needs the Maintainer role or higher. At most REGISTRIES_PER_GROUP (5) per group.' })
  @ApiParam({ name: 'id', description: 'The group ID or full group path.', example: '5' })
  @ApiCreatedResponse({ type: RegistryResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid name or description, a duplicate name, or the group has reached its registry limit.' })
  @ApiForbiddenResponse({ description: 'The caller can see the group but may not create registries.' })
  async create(@CurrentActor() actor: Actor, @Param('id') group: string, @Body() body: RegistryCreateDto): Promise<RegistryResponseDto> {
    return RegistryResponseDto.from(await this.registries.createOrUpdate(actor, { group, name: body.name, description: body.description, anonymousPull: body.anonymous_pull }));
  }

  @Get('virtual_registries/container/registries/:id')
  @ApiOperation({ summary: 'Get a virtual registry', description: 'Includes its upstream associations in position order.' })
  @ApiParam({ name: 'id', description: 'The ID of the virtual registry.', example: 1 })
  @ApiOkResponse({ type: RegistryDetailResponseDto })
  async get(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Registry Not Found')) id: number): Promise<RegistryDetailResponseDto> {
    const { registry, links } = await this.registries.detail(actor, id);
    return RegistryDetailResponseDto.fromDetail(registry, links);
  }

  @Patch('virtual_registries/container/registries/:id')
  @ApiOperation({ summary: 'Update a virtual registry', description: 'Provide at least one of name or description.' })
  @ApiParam({ name: 'id', description: 'The ID of the virtual registry.', example: 1 })
  @ApiOkResponse({ type: RegistryResponseDto })
  @ApiBadRequestResponse({ description: 'Nothing to update, an invalid value or a duplicate name.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async update(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Registry Not Found')) id: number,
    @Body() body: RegistryUpdateDto,
  ): Promise<RegistryResponseDto> {
    return RegistryResponseDto.from(await this.registries.createOrUpdate(actor, { id, name: body.name, description: body.description, anonymousPull: body.anonymous_pull }));
  }

  @Delete('virtual_registries/container/registries/:id')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({
    summary: 'Delete a virtual registry',
    description: 'Also deletes the upstreams no other registry uses, with their cache entries.',
  })
  @ApiParam({ name: 'id', description: 'The ID of the virtual registry.', example: 1 })
  @ApiNoContentResponse({ description: 'Deleted.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not delete the registry.' })
  async delete(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Registry Not Found')) id: number): Promise<void> {
    await this.registries.delete(actor, id);
  }
}
