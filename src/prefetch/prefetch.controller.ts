import { Body, Controller, Get, Param, Post } from '@nestjs/common';
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
import { InvalidFieldException } from '../common/invalid-field.exception.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import type { Actor } from '../accounts/actor.js';
import { ApiAdminAuth } from '../accounts/api-admin-auth.decorator.js';
import { CurrentActor } from '../accounts/current-actor.decorator.js';
import { parseImageReference, type ImageReference } from './image-reference.js';
import { PrefetchCreateDto, PrefetchResponseDto } from './prefetch.dto.js';
import { PrefetchService } from './prefetch.service.js';

const REGISTRY_ID = { name: 'id', description: 'The ID of the virtual registry.', example: 1 };

/** Extension: pre-warming a virtual registry's cache before a rollout. */
@ApiTags('Container virtual registries')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The registry or prefetch does not exist, or the caller cannot see it.' })
@Controller('api/v4/virtual_registries/container/registries')
export class PrefetchController {
  constructor(private readonly prefetches: PrefetchService) {}

  @Post(':id/prefetch')
  @ApiOperation({
    summary: 'Prefetch images into a virtual registry (extension)',
    description:
      'Queues one job per image that fills the cache exactly as a pull would (manifest or index, the children of the wanted ' +
      'platforms, every config and layer; verified, one upstream download per blob, shared with concurrent pulls). ' +
      'Needs the Maintainer role or higher. Follow the progress with GET .../prefetch/:prefetch_id.',
  })
  @ApiParam(REGISTRY_ID)
  @ApiCreatedResponse({ type: PrefetchResponseDto })
  @ApiBadRequestResponse({ description: 'No images, too many, or a malformed image reference or platform.' })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async create(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Registry Not Found')) registryId: number,
    @Body() body: PrefetchCreateDto,
  ): Promise<PrefetchResponseDto> {
    const references: ImageReference[] = body.images.map((image, i) => {
      try {
        return parseImageReference(image.image, image.platforms);
      } catch (err) {
        throw new InvalidFieldException(`images[${i}]`, (err as Error).message);
      }
    });
    return PrefetchResponseDto.from(await this.prefetches.create(actor, registryId, references));
  }

  @Get(':id/prefetch/:prefetch_id')
  @ApiOperation({
    summary: 'Get the progress of a prefetch (extension)',
    description: 'Per image: pending, running, done, or failed with the reason. Needs the Maintainer role or higher.',
  })
  @ApiParam(REGISTRY_ID)
  @ApiParam({ name: 'prefetch_id', description: 'The ID of the prefetch.', example: 1 })
  @ApiOkResponse({ type: PrefetchResponseDto })
  @ApiForbiddenResponse({ description: 'The caller may read but not change the registry.' })
  async get(
    @CurrentActor() actor: Actor,
    @Param('id', new ResourceIdPipe('Registry Not Found')) registryId: number,
    @Param('prefetch_id', new ResourceIdPipe('Prefetch Not Found')) prefetchId: number,
  ): Promise<PrefetchResponseDto> {
    return PrefetchResponseDto.from(await this.prefetches.get(actor, registryId, prefetchId));
  }
}
