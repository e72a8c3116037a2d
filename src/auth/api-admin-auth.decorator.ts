import { applyDecorators, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiForbiddenResponse, ApiSecurity, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { AdminAuthGuard } from './admin-auth.guard.js';

/**
 * Admin API authentication for a controller or route: a personal access token with the `api` scope in
 * `PRIVATE-TOKEN` or `Authorization: Bearer`, documented in Swagger with both security schemes.
 */
export function ApiAdminAuth(): ClassDecorator & MethodDecorator {
  return applyDecorators(
    UseGuards(AdminAuthGuard),
    ApiSecurity('private-token'),
    ApiBearerAuth('bearer'),
    ApiUnauthorizedResponse({ description: 'No personal access token, or one that is unknown, revoked, expired or of a blocked user: `{"message":"401 Unauthorized"}`.' }),
    ApiForbiddenResponse({ description: 'The token lacks the `api` scope, or the user lacks the role this route needs.' }),
  );
}
