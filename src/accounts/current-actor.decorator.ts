import { createParamDecorator, ExecutionContext, UnauthorizedException } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { Actor } from './actor.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by AdminAuthGuard once the caller's credential has been checked. */
    actor?: Actor;
  }
}

/** The Actor AdminAuthGuard authenticated (use on routes behind `@ApiAdminAuth()`). */
export const CurrentActor = createParamDecorator((_data: unknown, context: ExecutionContext): Actor => {
  const actor = context.switchToHttp().getRequest<FastifyRequest>().actor;
  if (!actor) throw new UnauthorizedException({ message: '401 Unauthorized' });
  return actor;
});
