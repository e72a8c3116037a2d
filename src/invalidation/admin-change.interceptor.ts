import { CallHandler, ExecutionContext, Inject, Injectable, NestInterceptor } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Observable } from 'rxjs';
import { tap } from 'rxjs';
import { INVALIDATION_BUS, type InvalidationBus } from './invalidation-bus.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Every admin API call that may change something (a token revoked, a member removed, an upstream
 * re-pointed, a cache purged) tells the invalidation bus, before its response leaves: a client that
 * sees the response can rely on the change in its next request. Failed calls tell it too; it costs
 * a re-read, never a wrong answer.
 */
@Injectable()
export class AdminChangeInterceptor implements NestInterceptor {
  constructor(@Inject(INVALIDATION_BUS) private readonly bus: InvalidationBus) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const path = request.raw.url ?? '';
    if (!MUTATING.has(request.method) || !path.startsWith('/api/')) return next.handle();
    const changed = () => this.bus.changed(`${request.method} ${path.split('?')[0]}`);
    return next.handle().pipe(tap({ next: changed, error: changed }));
  }
}
