import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AdminBootstrapService } from './admin-bootstrap.service.js';
import { DeployToken } from './deploy-token.entity.js';
import { DeployTokensController } from './deploy-tokens.controller.js';
import { DeployTokensService } from './deploy-tokens.service.js';
import { Group } from './group.entity.js';
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
 * admin API under /api/v4 (guards and the permission policy come from the global AuthModule).
 */
@Module({
  imports: [TypeOrmModule.forFeature([Group, User, Member, PersonalAccessToken, DeployToken])],
  controllers: [GroupsController, UsersController, MembersController, PersonalAccessTokensController, DeployTokensController],
  providers: [GroupsService, UsersService, MembersService, PersonalAccessTokensService, DeployTokensService, AdminBootstrapService],
  exports: [GroupsService, UsersService, TypeOrmModule],
})
export class AccountsModule {}
