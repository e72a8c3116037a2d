import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DeployToken } from '../accounts/deploy-token.entity.js';
import { Member } from '../accounts/member.entity.js';
import { PersonalAccessToken } from '../accounts/personal-access-token.entity.js';
import { User } from '../accounts/user.entity.js';
import { Registry } from '../registries/registry.entity.js';
import { AdminAuthGuard } from './admin-auth.guard.js';
import { CredentialService } from './credential.service.js';
import { GroupAccessPolicy } from './group-access.policy.js';
import { LoginThrottle } from './login-throttle.service.js';
import { RegistryBaseController } from './registry-base.controller.js';
import { RegistryTokenController } from './registry-token.controller.js';
import { RegistryPingService } from './registry-ping.service.js';
import { RegistryTokenService } from './registry-token.service.js';
import { SigningKeyService } from './signing-key.service.js';

/**
 * Authentication and authorization: the admin API guard, the group permission policy, the Docker token
 * service (`GET /v2/`, `/jwt/auth`) and registry token verification for the pull routes.
 * Global, so every module can use `@ApiAdminAuth()`, GroupAccessPolicy and RegistryTokenService
 * without importing it.
 */
@Global()
@Module({
  imports: [TypeOrmModule.forFeature([User, Member, PersonalAccessToken, DeployToken, Registry])],
  controllers: [RegistryBaseController, RegistryTokenController],
  providers: [CredentialService, GroupAccessPolicy, AdminAuthGuard, SigningKeyService, RegistryTokenService, LoginThrottle, RegistryPingService],
  exports: [CredentialService, GroupAccessPolicy, AdminAuthGuard, SigningKeyService, RegistryTokenService, RegistryPingService],
})
export class AuthModule {}
