import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, UseInterceptors } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { UserActor } from './actor.js';
import { ApiAdminAuth } from './api-admin-auth.decorator.js';
import { CurrentActor } from './current-actor.decorator.js';
import { GroupCreateDto, GroupResponseDto } from './group.dto.js';
import { GroupsService } from './groups.service.js';
import { Page, PageHeadersInterceptor, PageQueryDto } from '../common/pagination.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';

@ApiTags('groups')
@ApiAdminAuth()
@Controller('api/v4/groups')
export class GroupsController {
  constructor(private readonly groups: GroupsService) {}

  @Get()
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: 'List groups (admins: all; users: the groups they are members of)' })
  @ApiOkResponse({ type: GroupResponseDto, isArray: true })
  async list(@CurrentActor() actor: UserActor, @Query() query: PageQueryDto): Promise<Page<GroupResponseDto>> {
    return (await this.groups.list(actor, query)).map(GroupResponseDto.from);
  }

  @Post()
  @ApiOperation({ summary: 'Create a group; the caller becomes its owner' })
  @ApiCreatedResponse({ type: GroupResponseDto })
  async create(@CurrentActor() actor: UserActor, @Body() dto: GroupCreateDto): Promise<GroupResponseDto> {
    return GroupResponseDto.from(await this.groups.create(actor, dto));
  }

  @Get(':id')
  @ApiOperation({ summary: 'Get a group (reporter+)' })
  @ApiOkResponse({ type: GroupResponseDto })
  @ApiNotFoundResponse({ description: 'No such group, or not visible to the caller' })
  async find(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('Group Not Found')) id: number): Promise<GroupResponseDto> {
    return GroupResponseDto.from(await this.groups.find(actor, id));
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a group with its registries, upstreams, cache entries, members and deploy tokens (owner)' })
  @ApiNoContentResponse()
  async remove(@CurrentActor() actor: UserActor, @Param('id', new ResourceIdPipe('Group Not Found')) id: number): Promise<void> {
    await this.groups.remove(actor, id);
  }
}
