import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, UseInterceptors } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { UserActor } from './actor.js';
import { ApiAdminAuth } from './api-admin-auth.decorator.js';
import { CurrentActor } from './current-actor.decorator.js';
import { DeployTokenCreateDto, DeployTokenCreatedDto, DeployTokenResponseDto } from './deploy-token.dto.js';
import { DeployTokensService } from './deploy-tokens.service.js';
import { Page, PageHeadersInterceptor, PageQueryDto } from '../common/pagination.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';

@ApiTags('deploy tokens')
@ApiAdminAuth()
@Controller('api/v4/groups/:id/deploy_tokens')
export class DeployTokensController {
  constructor(private readonly deployTokens: DeployTokensService) {}

  @Get()
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: "List a group's deploy tokens (owner)" })
  @ApiOkResponse({ type: DeployTokenResponseDto, isArray: true })
  async list(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Query() query: PageQueryDto,
  ): Promise<Page<DeployTokenResponseDto>> {
    return (await this.deployTokens.list(actor, groupId, query)).map(DeployTokenResponseDto.from);
  }

  @Post()
  @ApiOperation({ summary: 'Create a deploy token (owner); the answer is the only time the secret is shown' })
  @ApiCreatedResponse({ type: DeployTokenCreatedDto })
  async create(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Body() dto: DeployTokenCreateDto,
  ): Promise<DeployTokenCreatedDto> {
    const { token, secret } = await this.deployTokens.create(actor, groupId, dto);
    return DeployTokenCreatedDto.withSecret(token, secret);
  }

  @Get(':token_id')
  @ApiOperation({ summary: 'Get a deploy token (owner)' })
  @ApiOkResponse({ type: DeployTokenResponseDto })
  async find(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Param('token_id', new ResourceIdPipe('Deploy Token Not Found')) id: number,
  ): Promise<DeployTokenResponseDto> {
    return DeployTokenResponseDto.from(await this.deployTokens.find(actor, groupId, id));
  }

  @Delete(':token_id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke a deploy token (owner)' })
  @ApiNoContentResponse()
  async revoke(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Param('token_id', new ResourceIdPipe('Deploy Token Not Found')) id: number,
  ): Promise<void> {
    await this.deployTokens.revoke(actor, groupId, id);
  }
}
