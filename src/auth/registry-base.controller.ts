import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { appConfig } from '../config/config.js';
import type { AppConfig } from '../config/config.js';
import { bearerToken, challengeHeader, RegistryAuthError, RegistryTokenService, requestBaseUrl } from './registry-token.service.js';

export const DISTRIBUTION_API_VERSION_HEADER = 'docker-distribution-api-version';
export const DISTRIBUTION_API_VERSION = 'registry/2.0';

/**
 * `GET /v2/`, the registry API version check every client starts with: 401 with the Bearer challenge
 * that sends it to `/jwt/auth`, or 200 `{}` with a valid registry token (that is how `docker login`
 * and `podman login` confirm the credentials).
 */
@ApiTags('registry')
@Controller()
export class RegistryBaseController {
  constructor(
    private readonly tokens: RegistryTokenService,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
  ) {}

  @Get('v2')
  @ApiBearerAuth('bearer')
  @ApiOperation({ summary: 'Registry API version check, `GET /v2/` (OCI distribution `end-1`)' })
  @ApiOkResponse({ description: '`{}` with a valid registry token' })
  @ApiResponse({ status: 401, description: 'No, an invalid or an expired token: `WWW-Authenticate: Bearer realm="<base>/jwt/auth",service="virtual_registry"`' })
  async versionCheck(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    void reply.header(DISTRIBUTION_API_VERSION_HEADER, DISTRIBUTION_API_VERSION);
    try {
      await this.tokens.verifyBearer(request.headers.authorization);
      return reply.code(200).send({});
    } catch (err) {
      if (!(err instanceof RegistryAuthError)) throw err;
      const presented = bearerToken(request.headers.authorization) !== undefined;
      return reply
        .code(401)
        .header('www-authenticate', challengeHeader(requestBaseUrl(this.app.publicUrl, request), undefined, presented ? 'invalid_token' : undefined))
        .send({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] });
    }
  }
}
