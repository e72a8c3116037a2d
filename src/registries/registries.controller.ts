import { Body, Controller, Get, Param, Patch, Post, Query, UseInterceptors } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
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
import { RegistriesService } from './registries.service.js';
import { RegistryCreateDto, RegistryListQueryDto, RegistryResponseDto, RegistryUpdateDto } from './registry.dto.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';

/**
 * GitLab's container virtual registry API: registries. Reading one registry with its upstream list and
 * deleting one with its exclusive upstreams are the upstreams module's (RegistryDetailController).
 */
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
  async list(@CurrentActor() actor: Actor, @Param('id') group: string, @Query() query: RegistryListQueryDto): Promise<Page<RegistryResponseDto>> {
    return (await this.registries.listForGroup(actor, group, Page.request(query))).map(RegistryResponseDto.from);
  }

  @Post('groups/:id/-/virtual_registries/container/registries')
  @ApiOperation({ summary: 'Create a virtual registry', description: 'Needs the Maintainer role or higher. At most REGISTRIES_PER_GROUP (5) per group.' })
  @ApiParam({ name: 'id', description: 'The group ID or full group path.', example: '5' })
  @ApiCreatedResponse({ type: RegistryResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid name or description, a duplicate name, or the group has reached its registry limit.' })
  @ApiForbiddenResponse({ description: 'The caller can see the group but may not create registries.' })
  async create(@CurrentActor() actor: Actor, @Param('id') group: string, @Body() body: RegistryCreateDto): Promise<RegistryResponseDto> {
    return RegistryResponseDto.from(
      await this.registries.createOrUpdate(actor, { group, name: body.name, description: body.description, anonymousPull: body.anonymous_pull }),
    );
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
    return RegistryResponseDto.from(
      await this.registries.createOrUpdate(actor, { id, name: body.name, description: body.description, anonymousPull: body.anonymous_pull }),
    );
  }
}
