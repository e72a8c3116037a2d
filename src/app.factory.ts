import { createServer, type IncomingMessage, type Server, type ServerOptions as HttpServerOptions, type ServerResponse } from 'node:http';
import { BadRequestException, ValidationError, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { AppModule } from './app.module.js';
import type { Environment, TrustProxy } from './config/environment.js';
import { AppLogger, createRootLogger } from './observability/app-logger.js';
import { MetricsService } from './observability/metrics.service.js';
import { RequestRecorder, requestIdOf } from './observability/request-recorder.js';
import { RegistryPullController, writePullResponse, type RememberedAnswer } from './proxy/registry-pull.controller.js';
import { ServerConnections } from './http-connections.js';
import { trackShutdown } from './shutdown-progress.js';

/**
 * Answers a request on the Node server before Fastify sees it (true), or leaves it to Fastify (false). A
 * request it took may still be handed to Fastify later, once, with `fullPath`.
 */
type EarlyAnswer = (req: IncomingMessage, res: ServerResponse, fullPath: () => void) => boolean;
type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** What Fastify sets on the Node server it builds (its options, defaults applied, as serverFactory gets them). */
interface ServerSettings {
  http?: HttpServerOptions;
  keepAliveTimeout?: number;
  requestTimeout?: number;
  connectionTimeout?: number;
  maxRequestsPerSocket?: number;
}

export const OPENAPI_PATH = 'api/docs';

/**
 * Builds the HTTP application of `env` (used by main.ts and by the e2e tests, which `listen(0)`):
 * Fastify with JSON logs carrying a request id, HTTP metrics, Swagger UI and graceful shutdown.
 */
export async function createApp(env: Environment, logger?: AppLogger): Promise<NestFastifyApplication> {
  const appLogger = logger ?? new AppLogger(createRootLogger(env.app.logLevel));
  const rootLogger = appLogger.pino;
  // Set once the application is built: what the Node server answers itself (rememberedPulls).
  const early: { answer?: EarlyAnswer } = {};
  const adapter = new FastifyAdapter({
    loggerInstance: rootLogger,
    // One access line per request is written by installRequestHooks (with the metrics).
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    // Request loggers are the root logger itself (no child logger per request): lines logged with a
    // request add its id themselves (`reqId`).
    childLoggerFactory: (logger: FastifyBaseLogger) => logger,
    genReqId: (req: IncomingMessage) => requestIdOf(req.headers),
    serverFactory: (handler: RequestHandler, options: ServerSettings) =>
      serverAnsweringFirst(options, (req, res) => {
        if (!early.answer?.(req, res, () => handler(req, res))) handler(req, res);
      }),
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
  const recorder = new RequestRecorder(app.get(MetricsService), rootLogger);
  installRequestHooks(fastify, recorder);
  // From Fastify's close on (its preClose hooks run as it starts answering 503), Fastify answers everything.
  let closing = false;
  fastify.addHook('preClose', (done) => {
    closing = true;
    closeConnectionsAsTheyIdle(fastify.server);
    done();
  });
  early.answer = rememberedPulls(app.get(RegistryPullController), recorder, rootLogger, () => !closing);
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
  trackShutdown(app);
  return app;
}

/** How often a closing server looks for connections whose last request has ended. */
const CLOSING_IDLE_CHECK_MS = 100;

/**
 * From now until `server` has closed, connections are closed as soon as their request in flight ends. Node's
 * close() (and Fastify's `forceCloseConnections: 'idle'`) closes the connections idle at that moment only:
 * a keep-alive connection whose response was still being sent stayed open until its keepAliveTimeout (72 s
 * in Fastify), past SHUTDOWN_TIMEOUT_MS, so a graceful shutdown during a pull ended in exit 1. A connection
 * opened and not used yet is closed too (ServerConnections.closeIdle; Node's closeIdleConnections() keeps
 * it until its headers timeout, 60 s).
 */
export function closeConnectionsAsTheyIdle(server: Server): void {
  const connections = ServerConnections.of(server);
  const closeIdle = () => {
    server.closeIdleConnections();
    connections.closeIdle();
  };
  const check = setInterval(closeIdle, CLOSING_IDLE_CHECK_MS);
  check.unref();
  server.once('close', () => clearInterval(check));
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

/**
 * The Node HTTP server Fastify runs on, as Fastify builds its own (its timeouts and limits), handing each
 * request to `handle`.
 */
function serverAnsweringFirst(options: ServerSettings, handle: RequestHandler): Server {
  const server = createServer(options.http ?? {}, handle);
  ServerConnections.of(server); // from the first connection on (closeConnectionsAsTheyIdle, trackShutdown)
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;
  if (options.requestTimeout !== undefined) server.requestTimeout = options.requestTimeout;
  server.setTimeout(options.connectionTimeout ?? 0);
  if (options.maxRequestsPerSocket) server.maxRequestsPerSocket = options.maxRequestsPerSocket;
  return server;
}

/**
 * Manifest and blob pulls this replica can answer from memory alone (RegistryPullController.rememberedAnswer:
 * the credential's pull granted moments ago, the manifest or blob entry served moments ago) are answered by
 * the Node server before Fastify and Nest see them: the same status, headers and body, the same
 * `X-Request-Id`, metrics and access line (RequestRecorder). Each framework layer costs a cached manifest
 * GET more than the answer itself (26k against 41k req/s by tag on 2 vCPUs with wrk), and a warm blob GET
 * its time to the first byte. Everything else goes to Fastify, and so does every request once `open()` says
 * the server is closing (Fastify's 503s), a blob whose object vanished, or one whose answer failed.
 */
export function rememberedPulls(pull: RegistryPullController, recorder: RequestRecorder, log: FastifyBaseLogger, open: () => boolean): EarlyAnswer {
  return (req, res, fullPath) => {
    const started = performance.now();
    const method = req.method ?? '';
    const url = req.url ?? '';
    if (!open()) return false;
    let answer: RememberedAnswer | undefined;
    try {
      answer = pull.rememberedAnswer(method, url, req.headers);
    } catch (err) {
      log.warn({ err, method, url }, 'answering a pull from memory failed: left to the full path');
    }
    if (!answer) return false;
    const id = requestIdOf(req.headers);
    const { route } = answer;
    if ('response' in answer) {
      const { status, headers, body } = answer.response;
      res.writeHead(status, { 'x-request-id': id, ...headers });
      res.end(body);
      recorder.record({ id, method, url }, route, status, performance.now() - started);
      return true;
    }
    // A blob: its answer once the stored object is open; the full path when it vanished or opening failed.
    answer.pending.then(
      (response) => {
        if (!response) return fullPath();
        res.once('close', () => recorder.record({ id, method, url }, route, res.statusCode, performance.now() - started));
        writePullResponse(res, response, { 'x-request-id': id }).catch((err: unknown) => {
          if (!res.destroyed) log.warn({ err, reqId: id }, 'serving a blob failed');
          res.destroy();
        });
      },
      (err: unknown) => {
        log.warn({ err, method, url }, 'answering a pull from memory failed: left to the full path');
        fullPath();
      },
    );
    return true;
  };
}

function installRequestHooks(fastify: FastifyInstance, recorder: RequestRecorder): void {
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    recorder.record(request, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime);
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
