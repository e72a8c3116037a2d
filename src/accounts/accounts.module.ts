import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { AdminBootstrapService } from './admin-bootstrap.service.js';
import { DeployToken } from './deploy-token.entity.js';
import { DeployTokensController } from './deploy-tokens.controller.js';
import { DeployTokensService } from './deploy-tokens.service.js';
import { Group } from './group.entity.js';
import { GroupAccessPolicy } from './group-access.policy.js';
import { GroupResolver } from './group-resolver.service.js';
import { GroupsController } from './groups.controller.js';
import { GroupsService } from './groups.service.js';
import { Member } from './member.entity.js';
import { MembersController } from './members.controller.js';
import { MembersService } from './members.service.js';
import { PersonalAccessToken } from './personal-access-token.entity.js';
import { PersonalAccessTokensController } from './personal-access-tokens.controller.js';
import { PersonalAccessTokensService } from './personal-access-tokens.service.js';
import { User } from './user.entity.js';
import { UsersController } from './users.controller.js';
import { UsersService } from './users.service.js';

/**
 * Groups, users, memberships, personal access tokens, deploy tokens and the admin bootstrap, with their
 * admin API under /api/v4; the group permission policy (GroupAccessPolicy) and group lookup every admin
 * module uses. `@ApiAdminAuth()` marks routes; the auth module's global guard checks them.
 */
@Module({
  imports: [TypeOrmModule.forFeature([Group, User, Member, PersonalAccessToken, DeployToken]), InvalidationModule],
  controllers: [GroupsController, UsersController, MembersController, PersonalAccessTokensController, DeployTokensController],
  providers: [
    GroupsService,
    UsersService,
    MembersService,
    PersonalAccessTokensService,
    DeployTokensService,
    AdminBootstrapService,
    GroupAccessPolicy,
    GroupResolver,
  ],
  exports: [GroupsService, UsersService, GroupAccessPolicy, GroupResolver, TypeOrmModule],
})
export class AccountsModule {}
