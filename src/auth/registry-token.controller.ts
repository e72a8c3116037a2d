import { Controller, Get, HttpStatus, Inject, Logger, Post, Req, Res } from '@nestjs/common';
import { ApiBasicAuth, ApiBody, ApiConsumes, ApiOkResponse, ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { appConfig, type AppConfig } from '../config/config.js';
import { REGISTRY_ID_MAX } from '../oci/registry-path.js';
import { Actor } from '../accounts/actor.js';
import { parseBasicAuthorization } from './basic-credentials.js';
import { CredentialService } from './credential.service.js';
import { type LoginOutcome, LoginThrottle } from './login-throttle.service.js';
import { requestedScopes } from './registry-scope.js';
import { RegistryAuthError, RegistryTokenResponse, RegistryTokenService } from './registry-token.service.js';
import { rootRegistryFor } from './root-registry.js';

type ErrorCode = 'UNAUTHORIZED' | 'TOOMANYREQUESTS' | 'UNSUPPORTED';

function sendError(reply: FastifyReply, status: number, code: ErrorCode, message: string): FastifyReply {
  return reply
    .code(status)
    .header('cache-control', 'no-store')
    .send({ errors: [{ code, message, detail: null }] });
}

function sendToken(reply: FastifyReply, body: RegistryTokenResponse): FastifyReply {
  return reply.code(HttpStatus.OK).header('cache-control', 'no-store').header('pragma', 'no-cache').send(body);
}

const THROTTLED_RESPONSE = {
  status: 429,
  description: 'Too many failed logins from this client address, or for this username from this address; see Retry-After',
};

const first = (value: unknown): string | undefined =>
  typeof value === 'string' ? value : Array.isArray(value) && typeof value[0] === 'string' ? value[0] : undefined;

/**
 * The Docker token endpoint (the realm of the registry's `WWW-Authenticate` challenge):
 * `GET /jwt/auth` with HTTP Basic (what `docker login`, podman and skopeo send) and the OAuth2
 * `POST /jwt/auth` form (containerd, and docker with a refresh token). Requested scopes the caller may
 * not have are silently dropped; a login without scope gets a token granting nothing, proving the
 * credentials. A mirror client's scope for the image's own name (`repository:library/alpine:pull`)
 * counts as the registry the realm names (`?registry=<id>`, in the mirror routes' challenges) or as the
 * root `/v2` registry of the request's Host. Without credentials, GET issues a pull-only token when some
 * requested scope is of a registry allowing anonymous pulls; otherwise it asks for credentials, as
 * before. Failed logins are rate limited per client address and per (client address, username)
 * (429 with Retry-After; see LoginThrottle).
 */
@ApiTags('registry auth')
@Controller('jwt')
export class RegistryTokenController {
  private readonly logger = new Logger(RegistryTokenController.name);

  constructor(
    private readonly tokens: RegistryTokenService,
    private readonly credentials: CredentialService,
    private readonly throttle: LoginThrottle,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
  ) {}

  /** The registry a bare (mirror client) scope refers to: `?registry=<id>` of the realm, else the Host's root registry. */
  private mirrorRegistryOf(request: FastifyRequest): number | undefined {
    const given = first(((request.query ?? {}) as Record<string, unknown>).registry);
    if (given !== undefined) return /^[1-9][0-9]{0,9}$/.test(given) && Number(given) <= REGISTRY_ID_MAX ? Number(given) : undefined;
    return rootRegistryFor(this.app.rootRegistries, request.host);
  }

  @Get('auth')
  @ApiBasicAuth('basic')
  @ApiOperation({ summary: 'Registry token for HTTP Basic credentials (username + personal access token or deploy token)' })
  @ApiQuery({ name: 'service', required: false, example: 'virtual_registry' })
  @ApiQuery({ name: 'scope', required: false, isArray: true, description: 'Repeatable; e.g. `repository:virtual_registries/containers/1/library/alpine:pull`' })
  @ApiQuery({ name: 'offline_token', required: false, description: '`true`: also return a refresh_token for the OAuth2 form' })
  @ApiQuery({
    name: 'registry',
    required: false,
    description:
      "The registry a mirror client's scope without the `virtual_registries/containers/<id>/` prefix refers to (the mirror routes' challenges put it in the realm)",
  })
  @ApiQuery({ name: 'account', required: false })
  @ApiQuery({ name: 'client_id', required: false })
  @ApiOkResponse({
    description:
      '`{token, access_token, expires_in, issued_at[, refresh_token]}`; without credentials, a pull-only token for the requested repositories of registries allowing anonymous pulls',
  })
  @ApiResponse({
    status: 401,
    description: 'No or wrong credentials (without credentials: no requested scope allows anonymous pulls): `{"errors":[{"code":"UNAUTHORIZED"}]}`',
  })
  @ApiResponse(THROTTLED_RESPONSE)
  async getToken(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    const query = (request.query ?? {}) as Record<string, unknown>;
    const credentials = parseBasicAuthorization(request.headers.authorization);
    if (credentials === null) {
      const anonymous = await this.tokens.issueAnonymous(requestedScopes(query.scope as string | string[] | undefined), this.mirrorRegistryOf(request));
      if (anonymous) return sendToken(reply, anonymous.body);
      return sendError(reply.header('www-authenticate', 'Basic realm="virtual_registry"'), 401, 'UNAUTHORIZED', 'authentication required');
    }
    const username = credentials === 'malformed' ? undefined : credentials.username;
    const actor = await this.login(request, reply, username, credentials === 'malformed' ? undefined : credentials.password);
    if (!actor) return reply;
    const scopes = requestedScopes(query.scope as string | string[] | undefined);
    const { body } = await this.tokens.issue(actor, scopes, {
      offline: first(query.offline_token) === 'true',
      mirrorRegistryId: this.mirrorRegistryOf(request),
    });
    return sendToken(reply, body);
  }

  @Post('auth')
  @ApiOperation({ summary: 'OAuth2 token form: grant_type=password (username, password) or grant_type=refresh_token' })
  @ApiConsumes('application/x-www-form-urlencoded')
  @ApiBody({
    schema: {
      type: 'object',
      required: ['grant_type'],
      properties: {
        grant_type: { type: 'string', enum: ['password', 'refresh_token'] },
        username: { type: 'string' },
        password: { type: 'string', description: 'Personal access token or deploy token' },
        refresh_token: { type: 'string' },
        service: { type: 'string', example: 'virtual_registry' },
        scope: { type: 'string', description: 'Space-separated scopes' },
        client_id: { type: 'string' },
        access_type: { type: 'string', enum: ['online', 'offline'], description: '`offline`: also return a refresh_token' },
      },
    },
  })
  @ApiOkResponse({ description: '`{token, access_token, expires_in, issued_at, scope[, refresh_token]}`' })
  @ApiResponse({ status: 400, description: 'Unsupported grant_type' })
  @ApiResponse({ status: 401, description: 'Wrong credentials or refresh token' })
  @ApiResponse(THROTTLED_RESPONSE)
  async postToken(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    const form = (request.body && typeof request.body === 'object' ? request.body : {}) as Record<string, unknown>;
    const grantType = first(form.grant_type);
    const scopes = requestedScopes(first(form.scope));
    let actor: Actor | null;
    if (grantType === 'password') {
      actor = await this.login(request, reply, first(form.username), first(form.password));
    } else if (grantType === 'refresh_token') {
      actor = await this.refresh(request, reply, first(form.refresh_token));
    } else {
      return sendError(reply, 400, 'UNSUPPORTED', 'grant_type must be password or refresh_token');
    }
    if (!actor) return reply;
    const offline = grantType === 'password' && first(form.access_type) === 'offline';
    const { body, scope } = await this.tokens.issue(actor, scopes, { offline, mirrorRegistryId: this.mirrorRegistryOf(request) });
    return sendToken(reply, { ...body, scope });
  }

  /** Checks a username + secret under the brute-force limits; on failure the reply is already sent. */
  private async login(request: FastifyRequest, reply: FastifyReply, username: string | undefined, secret: string | undefined): Promise<Actor | null> {
    const outcome = await this.throttle.attempt({ address: request.ip, username }, async () =>
      username && secret ? this.credentials.authenticateLogin(username, secret) : null,
    );
    return this.settle(request, reply, outcome, username, 'HTTP Basic: access denied, check the username and token');
  }

  private async refresh(request: FastifyRequest, reply: FastifyReply, refreshToken: string | undefined): Promise<Actor | null> {
    const outcome = await this.throttle.attempt({ address: request.ip }, async () => {
      try {
        if (!refreshToken) throw new RegistryAuthError('unauthorized', 'refresh_token is missing');
        return await this.tokens.actorFromRefreshToken(refreshToken);
      } catch (err) {
        if (!(err instanceof RegistryAuthError)) throw err;
        return null;
      }
    });
    return this.settle(request, reply, outcome, undefined, 'invalid or expired refresh token');
  }

  /** The actor of a successful login; otherwise sends the 429 or 401 and returns null. */
  private settle(request: FastifyRequest, reply: FastifyReply, outcome: LoginOutcome<Actor>, username: string | undefined, denied: string): Actor | null {
    if (outcome.kind === 'ok') return outcome.value;
    if (outcome.kind === 'throttled') {
      this.logger.warn({ msg: 'login throttled', ip: request.ip, username });
      sendError(reply.header('retry-after', String(outcome.retryAfterSeconds)), 429, 'TOOMANYREQUESTS', 'too many failed login attempts, try again later');
    } else {
      this.logger.log({ msg: 'login failed', ip: request.ip, username });
      sendError(reply, 401, 'UNAUTHORIZED', denied);
    }
    return null;
  }
}
