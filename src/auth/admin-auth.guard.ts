import { CanActivate, ExecutionContext, ForbiddenException, Injectable, UnauthorizedException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { TokenScope } from '../accounts/actor.js';
import { ADMIN_AUTH } from '../accounts/api-admin-auth.decorator.js';
import { CredentialService } from './credential.service.js';

/** The personal access token of an admin API request: `PRIVATE-TOKEN: <t>` or `Authorization: Bearer <t>`. */
export function personalAccessTokenOf(request: Pick<FastifyRequest, 'headers'>): string | undefined {
  const privateToken = request.headers['private-token'];
  if (typeof privateToken === 'string' && privateToken.trim()) return privateToken.trim();
  const authorization = request.headers.authorization;
  const bearer = typeof authorization === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
  return bearer?.[1];
}

/**
 * The admin API's authentication (GitLab's): a personal access token of an active user, neither revoked
 * nor expired, with the `api` scope. No or a bad token: 401 `{"message":"401 Unauthorized"}`; a good
 * token without `api`: 403 `insufficient_scope`. Role checks are GroupAccessPolicy's job, per route.
 * Registered as a global guard; it checks only the routes `@ApiAdminAuth()` marks.
 */
@Injectable()
export class AdminAuthGuard implements CanActivate {
  /** Whether a route (handler of a class) is marked: metadata never changes, and every pull request asks. */
  private readonly marked = new WeakMap<object, WeakMap<object, boolean>>();

  constructor(
    private readonly credentials: CredentialService,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    return this.isMarked(context) ? this.authenticate(context) : true;
  }

  private isMarked(context: ExecutionContext): boolean {
    const handler = context.getHandler();
    const controller = context.getClass();
    let byHandler = this.marked.get(controller);
    if (!byHandler) this.marked.set(controller, (byHandler = new WeakMap()));
    let marked = byHandler.get(handler);
    if (marked === undefined) {
      marked = this.reflector.getAllAndOverride<boolean>(ADMIN_AUTH, [handler, controller]) === true;
      byHandler.set(handler, marked);
    }
    return marked;
  }

  private async authenticate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const secret = personalAccessTokenOf(request);
    const actor = secret ? await this.credentials.authenticatePersonalAccessToken(secret) : null;
    if (!actor) throw new UnauthorizedException({ message: '401 Unauthorized' });
    if (!actor.scopes.includes(TokenScope.API)) {
      throw new ForbiddenException({
        error: 'insufficient_scope',
        error_description: 'The request requires higher privileges than provided by the access token.',
        scope: TokenScope.API,
      });
    }
    request.actor = actor;
    return true;
  }
}
