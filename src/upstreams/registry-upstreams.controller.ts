import { Body, Controller, Delete, HttpCode, HttpStatus, Param, Patch, Post } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
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
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import { RegistryUpstreamsService } from './registry-upstreams.service.js';
import { RegistryUpstreamCreateDto, RegistryUpstreamResponseDto, RegistryUpstreamUpdateDto } from './upstream.dto.js';

const LINK_ID = { name: 'id', description: 'The ID of the registry upstream association.', example: 1 };

/** GitLab's container virtual registry API: the ordered association of upstreams with registries. */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The registry, upstream or association does not exist, or the caller cannot see it.' })
@Controller('api/v4/virtual_registries/container/registry_upstreams')
export class RegistryUpstreamsController {
  constructor(private readonly registryUpstreams: RegistryUpstreamsService) {}

  @Post()
  @ApiOperation({ summary: 'Associate an upstream with a registry', description: 'The upstream goes last (position max + 1).' })
  @ApiCreatedResponse({ type: RegistryUpstreamResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid ids, or the registry already has UPSTREAMS_PER_REGISTRY upstreams.' })
  @ApiConflictResponse({ description: 'The upstream is already associated with the registry.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async create(@CurrentActor() actor: Actor, @Body() body: RegistryUpstreamCreateDto): Promise<RegistryUpstreamResponseDto> {
    return RegistryUpstreamResponseDto.from(await this.registryUpstreams.link(actor, { registryId: body.registry_id, upstreamId: body.upstream_id }));
  }

  @Patch(':id')
  @ApiOperation({
    summary: 'Update the position of an upstream in a registry',
    description: 'The upstreams in between shift by one; a position past the end moves it last.',
  })
  @ApiParam(LINK_ID)
  @ApiOkResponse({ type: RegistryUpstreamResponseDto })
  @ApiBadRequestResponse({ description: 'The position is missing or out of range.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async update(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Registry Upstream Not Found')) id: number,
    @Body() body: RegistryUpstreamUpdateDto,
  ): Promise<RegistryUpstreamResponseDto> {
    return RegistryUpstreamResponseDto.from(await this.registryUpstreams.move(actor, id, body.position));
  }

  @Delete(':id')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ summary: 'Disassociate an upstream from a registry', description: 'The upstreams after it move up; the upstream itself is kept.' })
  @ApiParam(LINK_ID)
  @ApiNoContentResponse({ description: 'Removed.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async delete(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Registry Upstream Not Found')) id: number): Promise<void> {
    await this.registryUpstreams.unlink(actor, id);
  }
}
