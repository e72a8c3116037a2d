import type { FastifyInstance } from 'fastify';
import type { InvalidationBus } from './invalidation-bus.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Every admin API call that may change something (a token revoked, a member removed, an upstream
 * re-pointed, a cache purged) tells the invalidation bus after its handler ran and before its response
 * leaves (`onSend`): a client that sees the response can rely on the change in its next request. Failed
 * calls tell it too; that costs a re-read, never a wrong answer. A Fastify hook rather than a Nest
 * interceptor, so the pull routes do not pay for an interceptor chain on every request.
 */
export function installAdminChangeHook(fastify: FastifyInstance, bus: InvalidationBus): void {
  fastify.addHook('onSend', (request, _reply, payload, done) => {
    const url = request.raw.url ?? '';
    if (MUTATING.has(request.method) && url.startsWith('/api/')) bus.changed(`${request.method} ${url.split('?')[0]}`);
    done(null, payload);
  });
}
