import { Body, Controller, Delete, Get, HttpCode, HttpStatus, Param, Patch, Post, Put } from '@nestjs/common';
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
import type { Actor } from '../accounts/actor.js';
import { ApiAdminAuth } from '../accounts/api-admin-auth.decorator.js';
import { CurrentActor } from '../accounts/current-actor.decorator.js';
import { CleanupPoliciesService } from './cleanup-policies.service.js';
import { CleanupPolicyCreateDto, CleanupPolicyResponseDto, CleanupPolicyUpdateDto } from './cleanup-policy.dto.js';

const GROUP_PARAM = { name: 'id', description: 'The group ID or full group path.', example: '5' };
const ROLE = 'Needs the Owner role (or an instance admin).';

/** GitLab's virtual registries cleanup policy API: one policy per group. */
@ApiTags('Virtual registries cleanup policies')
@ApiAdminAuth()
@ApiNotFoundResponse({ description: 'The group does not exist or the caller cannot see it, or (get, update, delete) it has no cleanup policy.' })
@ApiForbiddenResponse({ description: 'The caller can see the group but is not its owner.' })
@Controller('api/v4/groups/:id/-/virtual_registries/cleanup/policy')
export class CleanupPoliciesController {
  constructor(private readonly policies: CleanupPoliciesService) {}

  @Get()
  @ApiOperation({ summary: 'Get the cleanup policy of a group', description: ROLE })
  @ApiParam(GROUP_PARAM)
  @ApiOkResponse({ type: CleanupPolicyResponseDto })
  async get(@CurrentActor() actor: Actor, @Param('id') group: string): Promise<CleanupPolicyResponseDto> {
    return CleanupPolicyResponseDto.from(await this.policies.find(actor, group));
  }

  @Post()
  @ApiOperation({
    summary: 'Create the cleanup policy of a group',
    description: `${ROLE} A group has at most one. Defaults: disabled, keep_n_days_after_download 30, cadence 7; the first run is one cadence from now.`,
  })
  @ApiParam(GROUP_PARAM)
  @ApiCreatedResponse({ type: CleanupPolicyResponseDto })
  @ApiBadRequestResponse({ description: 'An invalid value, or the group already has a cleanup policy.' })
  async create(@CurrentActor() actor: Actor, @Param('id') group: string, @Body() body: CleanupPolicyCreateDto): Promise<CleanupPolicyResponseDto> {
    return CleanupPolicyResponseDto.from(await this.policies.create(actor, group, body));
  }

  @Patch()
  @ApiOperation({
    summary: 'Update the cleanup policy of a group',
    description: `${ROLE} Provide at least one field. Changing the cadence, or enabling the policy, schedules the next run one cadence from now.`,
  })
  @ApiParam(GROUP_PARAM)
  @ApiOkResponse({ type: CleanupPolicyResponseDto })
  @ApiBadRequestResponse({ description: 'Nothing to update, or an invalid value.' })
  async update(@CurrentActor() actor: Actor, @Param('id') group: string, @Body() body: CleanupPolicyUpdateDto): Promise<CleanupPolicyResponseDto> {
    return CleanupPolicyResponseDto.from(await this.policies.update(actor, group, body));
  }

  @Put()
  @ApiOperation({ summary: 'Update the cleanup policy of a group (same as PATCH)', description: `${ROLE} Provide at least one field.` })
  @ApiParam(GROUP_PARAM)
  @ApiOkResponse({ type: CleanupPolicyResponseDto })
  @ApiBadRequestResponse({ description: 'Nothing to update, or an invalid value.' })
  async replace(@CurrentActor() actor: Actor, @Param('id') group: string, @Body() body: CleanupPolicyUpdateDto): Promise<CleanupPolicyResponseDto> {
    return CleanupPolicyResponseDto.from(await this.policies.update(actor, group, body));
  }

  @Delete()
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ summary: 'Delete the cleanup policy of a group', description: ROLE })
  @ApiParam(GROUP_PARAM)
  @ApiNoContentResponse({ description: 'Deleted.' })
  async delete(@CurrentActor() actor: Actor, @Param('id') group: string): Promise<void> {
    await this.policies.remove(actor, group);
  }
}
