import { Inject, Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { appConfig, type AppConfig } from '../config/config.js';
import { bearerToken, challengeHeader, RegistryAuthError, RegistryTokenService, requestBaseUrl } from './registry-token.service.js';

export const DISTRIBUTION_API_VERSION_HEADER = 'docker-distribution-api-version';
export const DISTRIBUTION_API_VERSION = 'registry/2.0';

/**
 * The answer to the registry API version check (`GET`/`HEAD /v2/`, and a mirror registry's
 * `/virtual_registries/containers/<id>/v2/`): 200 `{}` with a valid registry token, or without one for a
 * registry that allows anonymous pulls; otherwise 401 with the Bearer challenge, whose realm names
 * `registryId` when the check is a mirror registry's. HEAD gets the same status and headers, no body.
 * Reads only: it starts nothing.
 */
@Injectable()
export class RegistryPingService {
  constructor(
    private readonly tokens: RegistryTokenService,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
  ) {}

  async answer(request: FastifyRequest, reply: FastifyReply, registryId: number | undefined): Promise<FastifyReply> {
    const head = request.method === 'HEAD';
    void reply.header(DISTRIBUTION_API_VERSION_HEADER, DISTRIBUTION_API_VERSION).header('content-type', 'application/json; charset=utf-8');
    const authorization = request.headers.authorization;
    try {
      await this.tokens.verifyBearer(authorization);
      return reply.code(200).send(head ? undefined : {});
    } catch (err) {
      if (!(err instanceof RegistryAuthError)) throw err;
    }
    if (!authorization && registryId !== undefined && (await this.tokens.allowsAnonymousPull(registryId))) {
      return reply.code(200).send(head ? undefined : {});
    }
    const presented = bearerToken(authorization) !== undefined;
    const challenge = challengeHeader(requestBaseUrl(this.app.publicUrl, request), undefined, presented ? 'invalid_token' : undefined, registryId);
    return reply
      .code(401)
      .header('www-authenticate', challenge)
      .send(head ? undefined : { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] });
  }
}
