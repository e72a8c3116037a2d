import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { OciError, OciErrorCode } from '../oci/index.js';
import { PullUnauthorizedError } from './pull-access.service.js';

/**
 * Every failure on the /v2 registry routes becomes an OCI error body with the right status, never an
 * empty body. A failure after the headers went out can only cut the stream (the client sees a failed
 * pull, not wrong bytes).
 */
@Catch()
export class OciExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('RegistryErrors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy(exception instanceof Error ? exception : undefined);
      return;
    }
    const error = toOciError(exception);
    if (error.status >= 500) {
      const err = exception instanceof Error ? exception : new Error(String(exception));
      this.logger.error({ msg: err.message, err, reqId: reply.request.id, url: reply.request.url });
    }
    const headers: Record<string, string> = {
      'docker-distribution-api-version': 'registry/2.0',
      'content-type': 'application/json',
    };
    if (exception instanceof PullUnauthorizedError) headers['www-authenticate'] = exception.challenge;
    if (error.code === OciErrorCode.TOOMANYREQUESTS) headers['retry-after'] = String((error.detail as { retryAfter?: number })?.retryAfter ?? 60);
    void reply.status(error.status).headers(headers).send(JSON.stringify(error));
  }
}

function toOciError(exception: unknown): OciError {
  if (OciError.is(exception)) return exception;
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const code =
      status === 401
        ? OciErrorCode.UNAUTHORIZED
        : status === 403
          ? OciErrorCode.DENIED
          : status === 405
            ? OciErrorCode.UNSUPPORTED
            : status === 429
              ? OciErrorCode.TOOMANYREQUESTS
              : status === 404
                ? OciErrorCode.NAME_UNKNOWN
                : OciErrorCode.UNAVAILABLE;
    return new OciError(code, exception.message, { status });
  }
  return new OciError(OciErrorCode.UNAVAILABLE, 'internal error', { status: 500 });
}
