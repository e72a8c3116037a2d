import { Controller, Delete, Get, HttpCode, HttpStatus, Param } from '@nestjs/common';
import { ApiForbiddenResponse, ApiNoContentResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { Actor } from '../accounts/actor.js';
import { ApiAdminAuth } from '../accounts/api-admin-auth.decorator.js';
import { CurrentActor } from '../accounts/current-actor.decorator.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import { RegistryDetailResponseDto } from '../registries/registry.dto.js';
import { RegistryUpstreamsService } from './registry-upstreams.service.js';

/**
 * GitLab's container virtual registry API: the two registry routes that involve its upstreams (read with
 * the ordered upstream list; delete with the upstreams no other registry uses). They live here because
 * the upstreams module owns the registry-upstream association; the rest of the registry routes are
 * RegistriesController's.
 */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The group or registry does not exist, or the caller cannot see it.' })
@Controller('api/v4')
export class RegistryDetailController {
  constructor(private readonly registryUpstreams: RegistryUpstreamsService) {}

  @Get('virtual_registries/container/registries/:id')
  @ApiOperation({ summary: 'Get a virtual registry', description: 'Includes its upstream associations in position order.' })
  @ApiParam({ name: 'id', description: 'The ID of the virtual registry.', example: 1 })
  @ApiOkResponse({ type: RegistryDetailResponseDto })
  async get(@CurrentActor() actor: Actor, @Param('id', new ResourceIdPipe('Registry Not Found')) id: number): Promise<RegistryDetailResponseDto> {
    const { registry, links } = await this.registryUpstreams.detail(actor, id);
    return RegistryDetailResponseDto.fromDetail(registry, links);
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
    await this.registryUpstreams.deleteRegistry(actor, id);
  }
}
