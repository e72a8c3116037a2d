import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { MetricsService } from './metrics.service.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** A request's id: the client's `X-Request-Id` when it is a sane one, otherwise a new UUID. */
export function requestIdOf(headers: IncomingHttpHeaders): string {
  const given = headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Where the access line goes (the root logger). */
export interface AccessLog {
  info(line: object, message: string): void;
}

/**
 * What every finished request leaves behind, however it was answered (Fastify's onResponse hook, or an
 * answer from memory before Fastify, app.factory.ts): `http_requests_total` and
 * `http_request_duration_seconds` by method, route template and status, and one access line at info level.
 */
export class RequestRecorder {
  /** The metric children of each (method, route, status), bound once: no label hashing per request. */
  private readonly children = new Map<string, { requests: { inc(): void }; duration: { observe(seconds: number): void } }>();

  constructor(
    private readonly metrics: MetricsService,
    private readonly log: AccessLog,
  ) {}

  record(request: { id: string; method: string; url: string }, route: string, status: number, ms: number): void {
    const { method } = request;
    const key = `${method} ${status} ${route}`;
    let bound = this.children.get(key);
    if (!bound) {
      bound = {
        requests: this.metrics.tally(this.metrics.httpRequests, { method, route, status: String(status) }),
        duration: this.metrics.httpDuration.labels({ method, route }),
      };
      // Routes are templates and statuses few; unmatched URLs all share the 'unmatched' route.
      if (this.children.size < 10_000) this.children.set(key, bound);
    }
    bound.requests.inc();
    bound.duration.observe(ms / 1000);
    this.log.info({ reqId: request.id, method, url: request.url, status, ms: Math.round(ms) }, 'request');
  }
}
