import { randomUUID } from 'node:crypto';
import { BadRequestException, ValidationError, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { AppModule } from './app.module.js';
import type { Environment, TrustProxy } from './config/environment.js';
import { AppLogger, createRootLogger } from './observability/app-logger.js';
import { MetricsService } from './observability/metrics.service.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export const OPENAPI_PATH = 'api/docs';

/**
 * Builds the HTTP application of `env` (used by main.ts and by the e2e tests, which `listen(0)`):
 * Fastify with JSON logs carrying a request id, HTTP metrics, Swagger UI and graceful shutdown.
 */
export async function createApp(env: Environment, logger?: AppLogger): Promise<NestFastifyApplication> {
  const appLogger = logger ?? new AppLogger(createRootLogger(env.app.logLevel));
  const rootLogger = appLogger.pino;
  const adapter = new FastifyAdapter({
    loggerInstance: rootLogger,
    // One access line per request is written by installRequestHooks (with the metrics).
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    // Request loggers are the root logger itself (no child logger per request): lines logged with a
    // request add its id themselves (`reqId`).
    childLoggerFactory: (logger: FastifyBaseLogger) => logger,
    genReqId: (req: { headers: Record<string, string | string[] | undefined> }) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { maxParamLength: 4096 },
    // The pull routes declare HEAD themselves (a HEAD miss must not start a blob download).
    exposeHeadRoutes: false,
    // Registry clients call `GET /v2/`; Nest registers routes without the trailing slash.
    ignoreTrailingSlash: true,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    bodyLimit: 1024 * 1024,
    trustProxy: fastifyTrustProxy(env.app.trustProxy),
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(env), adapter, {
    logger: appLogger,
    abortOnError: false,
  });
  const fastify = app.getHttpAdapter().getInstance();
  installRequestHooks(fastify, app.get(MetricsService));
  // Cache-entry uploads take raw bytes: the handler gets the request stream itself (never buffered).
  for (const type of ['application/octet-stream', /^application\/vnd\.(oci|docker)\./]) {
    fastify.addContentTypeParser(type, (_request: unknown, payload: unknown, done: (err: null, body: unknown) => void) => done(null, payload));
  }
  app.useGlobalPipes(
    new ValidationPipe({
      whitelist: true,
      transform: true,
      exceptionFactory: (errors) => new BadRequestException({ message: fieldErrors(errors), error: 'Bad Request', statusCode: 400 }),
    }),
  );
  setupOpenApi(app);
  return app;
}

/**
 * TRUST_PROXY as Fastify's `trustProxy`. A hop count becomes "trust the nearest n peers": Fastify 5.12
 * treats a plain number as "trust nobody" (it cannot tell a direct client from a proxy), so the count is
 * only meaningful, as with `true`, when clients cannot reach the app but through those proxies.
 */
export function fastifyTrustProxy(setting: TrustProxy): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof setting !== 'number') return setting;
  return (_address, hop) => hop < setting;
}

/**
 * Validation errors in GitLab's shape: `{"message": {"name": ["name must be shorter than ..."]}}`
 * (nested fields as `parent.child`), with Nest's `error` and `statusCode`.
 */
function fieldErrors(errors: ValidationError[], prefix = ''): Record<string, string[]> {
  const fields: Record<string, string[]> = {};
  for (const error of errors) {
    const field = `${prefix}${error.property}`;
    if (error.constraints) fields[field] = Object.values(error.constraints);
    if (error.children?.length) Object.assign(fields, fieldErrors(error.children, `${field}.`));
  }
  return fields;
}

function installRequestHooks(fastify: FastifyInstance, metrics: MetricsService): void {
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  // The metric children of each (method, route, status), bound once: no label hashing per request.
  const children = new Map<string, { requests: { inc(): void }; duration: { observe(seconds: number): void } }>();
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const key = `${request.method} ${reply.statusCode} ${route}`;
    let bound = children.get(key);
    if (!bound) {
      bound = {
        requests: metrics.tally(metrics.httpRequests, { method: request.method, route, status: String(reply.statusCode) }),
        duration: metrics.httpDuration.labels({ method: request.method, route }),
      };
      // Routes are templates and statuses few; unmatched URLs all share the 'unmatched' route.
      if (children.size < 10_000) children.set(key, bound);
    }
    bound.requests.inc();
    bound.duration.observe(reply.elapsedTime / 1000);
    request.log.info({ reqId: request.id, method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    done();
  });
}

function setupOpenApi(app: NestFastifyApplication): void {
  const config = new DocumentBuilder()
    .setTitle('Container Virtual Registry')
    .setDescription(
      'A pull-through cache for container images: virtual registries with ordered upstreams. ' +
        'Admin API (GitLab-compatible paths under /api/v4) and the registry pull API under /v2.',
    )
    .setVersion('0.1.0')
    .addApiKey({ type: 'apiKey', in: 'header', name: 'PRIVATE-TOKEN', description: 'Personal access token with the api scope' }, 'private-token')
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'Personal access token (admin API) or registry JWT (pull API)' }, 'bearer')
    .addBasicAuth({ type: 'http', scheme: 'basic', description: 'Username + personal access token or deploy token (registry token endpoint)' }, 'basic')
    .build();
  const document = SwaggerModule.createDocument(app, config);
  SwaggerModule.setup(OPENAPI_PATH, app, document, {
    jsonDocumentUrl: `${OPENAPI_PATH}-json`,
    swaggerOptions: { persistAuthorization: true },
  });
}
