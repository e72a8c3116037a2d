import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, UseInterceptors } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { UserActor } from './actor.js';
import { ApiAdminAuth } from './api-admin-auth.decorator.js';
import { CurrentActor } from './current-actor.decorator.js';
import { Page, PageHeadersInterceptor } from '../common/pagination.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';
import { UserCreateDto, UserListQueryDto, UserResponseDto } from './user.dto.js';
import { UserState } from './user.entity.js';
import { UsersService } from './users.service.js';

@ApiTags('users')
@ApiAdminAuth()
@Controller('api/v4')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Get('user')
  @ApiOperation({ summary: 'The user of this token (who am I)' })
  @ApiOkResponse({ type: UserResponseDto })
  async me(@CurrentActor() actor: UserActor): Promise<UserResponseDto> {
    return UserResponseDto.from(await this.users.me(actor));
  }

  @Get('users')
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: 'List users (instance admin)' })
  @ApiOkResponse({ type: UserResponseDto, isArray: true })
  async list(@CurrentActor() actor: UserActor, @Query() query: UserListQueryDto): Promise<Page<UserResponseDto>> {
    return (await this.users.list(actor, query)).map(UserResponseDto.from);
  }

  @Post('users')
  @ApiOperation({ summary: 'Create a user (instance admin); give it a token with POST /users/:id/personal_access_tokens' })
  @ApiCreatedResponse({ type: UserResponseDto })
  async create(@CurrentActor() actor: UserActor, @Body() dto: UserCreateDto): Promise<UserResponseDto> {
    return UserResponseDto.from(await this.users.create(actor, dto));
  }

  @Get('users/:id')
  @ApiOperation({ summary: 'Get a user (instance admin, or the user itself)' })
  @ApiOkResponse({ type: UserResponseDto })
  async find(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('User Not Found')) id: number): Promise<UserResponseDto> {
    return UserResponseDto.from(await this.users.find(actor, id));
  }

  @Post('users/:id/block')
  @ApiOperation({ summary: 'Block a user: every token of it stops working at once (instance admin)' })
  @ApiCreatedResponse({ type: UserResponseDto })
  async block(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('User Not Found')) id: number): Promise<UserResponseDto> {
    return UserResponseDto.from(await this.users.setState(actor, id, UserState.BLOCKED));
  }

  @Post('users/:id/unblock')
  @ApiOperation({ summary: 'Unblock a user (instance admin)' })
  @ApiCreatedResponse({ type: UserResponseDto })
  async unblock(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('User Not Found')) id: number): Promise<UserResponseDto> {
    return UserResponseDto.from(await this.users.setState(actor, id, UserState.ACTIVE));
  }

  @Delete('users/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a user with its memberships and tokens (instance admin)' })
  @ApiNoContentResponse()
  async remove(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('User Not Found')) id: number): Promise<void> {
    await this.users.remove(actor, id);
  }
}
