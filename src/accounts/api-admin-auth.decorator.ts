import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiBearerAuth, ApiForbiddenResponse, ApiSecurity, ApiUnauthorizedResponse } from '@nestjs/swagger';

/** Route metadata the auth module's global AdminAuthGuard acts on (routes without it are left alone). */
export const ADMIN_AUTH = 'cvr:admin-auth';

/**
 * Admin API authentication for a controller or route: a personal access token with the `api` scope in
 * `PRIVATE-TOKEN` or `Authorization: Bearer`, documented in Swagger with both security schemes. The check
 * itself is AdminAuthGuard's (src/auth, registered globally), so admin modules do not depend on auth.
 */
export function ApiAdminAuth(): ClassDecorator & MethodDecorator {
  return applyDecorators(
    SetMetadata(ADMIN_AUTH, true),
    ApiSecurity('private-token'),
    ApiBearerAuth('bearer'),
    ApiUnauthorizedResponse({
      description: 'No personal access token, or one that is unknown, revoked, expired or of a blocked user: `{"message":"401 Unauthorized"}`.',
    }),
    ApiForbiddenResponse({ description: 'The token lacks the `api` scope, or the user lacks the role this route needs.' }),
  );
}
