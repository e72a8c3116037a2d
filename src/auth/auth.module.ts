import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AccountsModule } from '../accounts/accounts.module.js';
import { InvalidationModule } from '../invalidation/invalidation.module.js';
import { ObservabilityModule } from '../observability/observability.module.js';
import { RedisModule } from '../redis/redis.module.js';
import { Registry } from '../registries/registry.entity.js';
import { AdminAuthGuard } from './admin-auth.guard.js';
import { CredentialService } from './credential.service.js';
import { LoginThrottle } from './login-throttle.service.js';
import { RecentCredentials } from './recent-credentials.js';
import { RegistryBaseController } from './registry-base.controller.js';
import { RegistryTokenController } from './registry-token.controller.js';
import { RegistryPingService } from './registry-ping.service.js';
import { RegistryTokenService } from './registry-token.service.js';
import { SigningKeyService } from './signing-key.service.js';

/**
 * Authentication: the admin API guard (global, acting on routes `@ApiAdminAuth()` marks), the Docker token
 * service (`GET /v2/`, `/jwt/auth`) and registry token verification for the pull routes. Builds on the
 * accounts module (users, tokens, memberships, the group permission policy).
 */
@Module({
  imports: [AccountsModule, InvalidationModule, ObservabilityModule, RedisModule, TypeOrmModule.forFeature([Registry])],
  controllers: [RegistryBaseController, RegistryTokenController],
  providers: [
    CredentialService,
    RecentCredentials,
    AdminAuthGuard,
    { provide: APP_GUARD, useExisting: AdminAuthGuard },
    SigningKeyService,
    RegistryTokenService,
    LoginThrottle,
    RegistryPingService,
  ],
  exports: [CredentialService, SigningKeyService, RegistryTokenService, RegistryPingService],
})
export class AuthModule {}
