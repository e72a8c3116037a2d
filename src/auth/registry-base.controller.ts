import { Controller, Get, Head, Inject, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { appConfig } from '../config/config.js';
import type { AppConfig } from '../config/config.js';
import { RegistryPingService } from './registry-ping.service.js';
import { rootRegistryFor } from './root-registry.js';

const SUMMARY = 'Registry API version check, `/v2/` (OCI distribution `end-1`)';
const DESCRIPTION =
  "With MIRROR_DEFAULT_REGISTRY or MIRROR_HOST_REGISTRIES, the challenge names the root `/v2` registry of the request's Host " +
  '(`realm="<base>/jwt/auth?registry=<id>"`), and a root registry allowing anonymous pulls answers 200 without credentials. ' +
  "A registry in Docker's `registry-mirrors` form answers the same at `/virtual_registries/containers/<id>/v2/`.";
const UNAUTHORIZED = 'No, an invalid or an expired token: `WWW-Authenticate: Bearer realm="<base>/jwt/auth",service="virtual_registry"`';

/**
 * `GET /v2/` (and HEAD, alike without a body), the registry API version check every client starts with:
 * 401 with the Bearer challenge that sends it to `/jwt/auth`, or 200 `{}` with a valid registry token
 * (that is how `docker login` and `podman login` confirm the credentials). See RegistryPingService.
 */
@ApiTags('registry')
@Controller()
export class RegistryBaseController {
  constructor(
    private readonly ping: RegistryPingService,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
  ) {}

  @Get('v2')
  @ApiBearerAuth('bearer')
  @ApiOperation({ summary: SUMMARY, description: DESCRIPTION })
  @ApiOkResponse({ description: '`{}` with a valid registry token' })
  @ApiResponse({ status: 401, description: UNAUTHORIZED })
  async versionCheck(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    return this.ping.answer(request, reply, rootRegistryFor(this.app.rootRegistries, request.host));
  }

  @Head('v2')
  @ApiBearerAuth('bearer')
  @ApiOperation({ summary: `${SUMMARY}, headers only: the same status and challenge as GET; starts nothing` })
  @ApiOkResponse({ description: 'With a valid registry token' })
  @ApiResponse({ status: 401, description: UNAUTHORIZED })
  async versionCheckHead(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    return this.ping.answer(request, reply, rootRegistryFor(this.app.rootRegistries, request.host));
  }
}
