import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, UseInterceptors } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { UserActor } from './actor.js';
import { ApiAdminAuth } from './api-admin-auth.decorator.js';
import { CurrentActor } from './current-actor.decorator.js';
import { Page, PageHeadersInterceptor, PageQueryDto } from '../common/pagination.js';
import {
  PersonalAccessTokenCreateDto,
  PersonalAccessTokenCreatedDto,
  PersonalAccessTokenResponseDto,
  PersonalAccessTokenRotateDto,
} from './personal-access-token.dto.js';
import { PersonalAccessTokensService } from './personal-access-tokens.service.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';

@ApiTags('personal access tokens')
@ApiAdminAuth()
@Controller('api/v4')
export class PersonalAccessTokensController {
  constructor(private readonly tokens: PersonalAccessTokensService) {}

  @Post('users/:user_id/personal_access_tokens')
  @ApiOperation({ summary: 'Create a token for a user (instance admin); the answer is the only time the secret is shown' })
  @ApiCreatedResponse({ type: PersonalAccessTokenCreatedDto })
  async createFor(
    @CurrentActor() actor: UserActor,
    @Param('user_id', new ResourceIdPipe('User Not Found')) userId: number,
    @Body() dto: PersonalAccessTokenCreateDto,
  ): Promise<PersonalAccessTokenCreatedDto> {
    const { token, secret } = await this.tokens.createFor(actor, userId, dto);
    return PersonalAccessTokenCreatedDto.withSecret(token, secret);
  }

  @Get('user/personal_access_tokens')
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: "List the caller's own tokens" })
  @ApiOkResponse({ type: PersonalAccessTokenResponseDto, isArray: true })
  async listOwn(@CurrentActor() actor: UserActor, @Query() query: PageQueryDto): Promise<Page<PersonalAccessTokenResponseDto>> {
    return (await this.tokens.listOwn(actor, query)).map(PersonalAccessTokenResponseDto.from);
  }

  @Post('user/personal_access_tokens')
  @ApiOperation({ summary: 'Create a token for the caller; the answer is the only time the secret is shown' })
  @ApiCreatedResponse({ type: PersonalAccessTokenCreatedDto })
  async createOwn(@CurrentActor() actor: UserActor, @Body() dto: PersonalAccessTokenCreateDto): Promise<PersonalAccessTokenCreatedDto> {
    const { token, secret } = await this.tokens.createOwn(actor, dto);
    return PersonalAccessTokenCreatedDto.withSecret(token, secret);
  }

  @Post('personal_access_tokens/self/rotate')
  @HttpCode(200)
  @ApiOperation({ summary: 'Rotate the token of this request: it is revoked and a new one (same name and scopes) returned' })
  @ApiOkResponse({ type: PersonalAccessTokenCreatedDto })
  async rotateSelf(@CurrentActor() actor: UserActor, @Body() dto: PersonalAccessTokenRotateDto): Promise<PersonalAccessTokenCreatedDto> {
    const { token, secret } = await this.tokens.rotateSelf(actor, dto);
    return PersonalAccessTokenCreatedDto.withSecret(token, secret);
  }

  @Delete('personal_access_tokens/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke a token (its owner, or an instance admin)' })
  @ApiNoContentResponse()
  async revoke(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('Personal Access Token Not Found')) id: number): Promise<void> {
    await this.tokens.revoke(actor, id);
  }
}
