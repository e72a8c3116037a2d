import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Query, UseInterceptors } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { UserActor } from './actor.js';
import { ApiAdminAuth } from './api-admin-auth.decorator.js';
import { CurrentActor } from './current-actor.decorator.js';
import { MemberCreateDto, MemberResponseDto, MemberUpdateDto } from './member.dto.js';
import { MembersService } from './members.service.js';
import { Page, PageHeadersInterceptor, PageQueryDto } from '../common/pagination.js';
import { ResourceIdPipe } from '../common/resource-id.pipe.js';

@ApiTags('members')
@ApiAdminAuth()
@Controller('api/v4/groups/:id/members')
export class MembersController {
  constructor(private readonly members: MembersService) {}

  @Get()
  @UseInterceptors(PageHeadersInterceptor)
  @ApiOperation({ summary: 'List the members of a group (reporter+)' })
  @ApiOkResponse({ type: MemberResponseDto, isArray: true })
  async list(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Query() query: PageQueryDto,
  ): Promise<Page<MemberResponseDto>> {
    return (await this.members.list(actor, groupId, query)).map(MemberResponseDto.from);
  }

  @Post()
  @ApiOperation({ summary: 'Add a user to a group with a role (owner)' })
  @ApiCreatedResponse({ type: MemberResponseDto })
  async add(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Body() dto: MemberCreateDto,
  ): Promise<MemberResponseDto> {
    return MemberResponseDto.from(await this.members.add(actor, groupId, dto));
  }

  @Put(':user_id')
  @ApiOperation({ summary: "Change a member's role (owner; a group keeps at least one owner)" })
  @ApiOkResponse({ type: MemberResponseDto })
  async update(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Param('user_id', new ResourceIdPipe('Member Not Found')) userId: number,
    @Body() dto: MemberUpdateDto,
  ): Promise<MemberResponseDto> {
    return MemberResponseDto.from(await this.members.update(actor, groupId, userId, dto));
  }

  @Delete(':user_id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a member (owner; a group keeps at least one owner)' })
  @ApiNoContentResponse()
  async remove(
    @CurrentActor() actor: UserActor,
    @Param('id', new ResourceIdPipe('Group Not Found')) groupId: number,
    @Param('user_id', new ResourceIdPipe('Member Not Found')) userId: number,
  ): Promise<void> {
    await this.members.remove(actor, groupId, userId);
  }
}
