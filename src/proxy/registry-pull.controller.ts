import { Controller, Delete, Get, Head, Inject, Patch, Post, Put, Req, Res, UseFilters } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryPingService } from '../auth/registry-ping.service.js';
import { requestBaseUrl } from '../auth/registry-token.service.js';
import { rootRegistryFor } from '../auth/root-registry.js';
import { appConfig, type AppConfig } from '../config/config.js';
import { OciError, OciErrorCode, parseRegistryId, parseRegistryPath, parseRegistryRoute, parseRepositoryPath, type RegistryRequest } from '../oci/index.js';
import { isSelfWriting } from '../storage/file-body.js';
import { narrowToNamespace } from './mirror-namespace.js';
import { OciExceptionFilter } from './oci-exception.filter.js';
import { PullAccessService } from './pull-access.service.js';
import type { BufferedPullResponse, PullResponse } from './pull-response.js';
import type { PullTarget } from '../upstreams/pull-target.js';
import { PullRateLimiter } from './pull-rate-limiter.js';
import { ProxyBlobStore, type PullMethod } from './proxy-blob-store.js';
import { ProxyManifestStore } from './proxy-manifest-store.js';
import { UpstreamListings } from './upstream-listings.js';

const ROUTE = /^\/v2\/virtual_registries\/containers?\/([^?]*)/;
/** Docker's `registry-mirrors` form: the mirror's path comes before `/v2`. */
const DOCKER_MIRROR_ROUTE = /^\/virtual_registries\/containers?\/([^/?]*)\/v2\/([^?]*)/;
/** Its version check, `/virtual_registries/containers/<id>/v2/` (answered as `GET /v2/` is). */
const DOCKER_MIRROR_PING = /^\/virtual_registries\/containers?\/([^/?]*)\/v2\/?(?:\?|$)/;
const ROOT_ROUTE = /^\/v2\/([^?]*)/;
const PATH_DOC =
  'Everything after the spelling: `<registry id>/<name>/manifests/<tag|digest>`, `<id>/<name>/blobs/<digest>`, `<id>/<name>/tags/list` or `<id>/<name>/referrers/<digest>`; ' +
  'in the `registry-mirrors` form `<id>/v2/<name>/...`';
const NS_DOC =
  'The registry host of the image the client asked for (containerd sends it to every mirror): only the upstreams serving that host are asked ' +
  "(their URL's host, `docker.io`/`index.docker.io`/`registry-1.docker.io` as one, or a host declared in `mirror_hosts`); none: 404 NAME_UNKNOWN";

const ROOT_PATH_DOC = '`<name>/manifests/<tag|digest>`, `<name>/blobs/<digest>`, `<name>/tags/list` or `<name>/referrers/<digest>` of the root registry';
const PING_DOC =
  ". `/virtual_registries/containers/<id>/v2/` is that registry's version check (as `GET /v2/`, its challenge's realm naming the registry: `/jwt/auth?registry=<id>`)";

/** The three ways a pull addresses its registry (see the controllers). */
type RouteForm = 'prefixed' | 'docker-mirror' | 'root';

/** RegistryPullController's routes: the prefixed form, then the `registry-mirrors` form. */
const PULL_PATHS = ['v2/virtual_registries/:spelling/*', 'virtual_registries/:spelling/*'];

/**
 * A pull answered from memory (PullRoutes.rememberedAnswer), and the route that would have served it
 * (metrics): a manifest's whole answer, or a blob's answer once its stored object is open (`pending`;
 * undefined when the object vanished: the full path then answers).
 */
export type RememberedAnswer = { route: string } & ({ response: BufferedPullResponse } | { pending: Promise<PullResponse | undefined> });

/**
 * The registry pull API (OCI distribution spec, pull side) of every virtual registry, on the routes
 * `paths` (see the two controllers below). `?ns=<host>` narrows the upstreams asked to those serving that
 * host. Authorisation, then one call into the manifest store, the blob store or the listings.
 */
function pullRoutes(paths: string[], pathDoc: string, withSpelling: boolean) {
  @ApiTags('registry (pull API)')
  @ApiBearerAuth('bearer')
  @ApiParam({ name: 'path', description: pathDoc })
  @ApiQuery({ name: 'ns', required: false, description: NS_DOC, example: 'docker.io' })
  @(withSpelling ? ApiParam({ name: 'spelling', enum: ['containers', 'container'] }) : () => undefined)
  @UseFilters(OciExceptionFilter)
  class PullRoutes {
    constructor(
      @Inject(ProxyManifestStore) readonly manifests: ProxyManifestStore,
      @Inject(UpstreamListings) readonly listings: UpstreamListings,
      @Inject(ProxyBlobStore) readonly blobs: ProxyBlobStore,
      @Inject(PullAccessService) readonly access: PullAccessService,
      @Inject(PullRateLimiter) readonly rateLimiter: PullRateLimiter,
      @Inject(RegistryPingService) readonly ping: RegistryPingService,
      @Inject(appConfig.KEY) readonly app: AppConfig,
    ) {}

    @Get(paths)
    @ApiOperation({ summary: 'Pull a manifest or blob, list tags or referrers (served from cache, or streamed from the first upstream that has it)' })
    @ApiResponse({
      status: 200,
      description: 'The content; `Docker-Content-Digest`, exact `Content-Type`, `Content-Length`, `ETag`' + (withSpelling ? PING_DOC : ''),
    })
    @ApiResponse({ status: 206, description: 'A byte range of a blob (`Range: bytes=a-b`)' })
    @ApiResponse({ status: 401, description: 'UNAUTHORIZED: get a token at the realm named by `WWW-Authenticate`' })
    @ApiResponse({
      status: 404,
      description: 'MANIFEST_UNKNOWN, BLOB_UNKNOWN or NAME_UNKNOWN (also: no upstream serves `ns`; no root registry configured for this Host)',
    })
    @ApiResponse({ status: 429, description: 'TOOMANYREQUESTS (PULL_RATE_LIMIT_PER_MINUTE), with Retry-After' })
    @ApiResponse({ status: 503, description: 'UNAVAILABLE: no upstream answered and nothing is cached' })
    async get(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
      if (await this.answeredPing(request, reply)) return;
      await this.send(reply, await this.handle(request, 'GET'));
    }

    @Head(paths)
    @ApiOperation({ summary: 'Check a manifest or blob exists (headers only)' })
    async head(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
      if (await this.answeredPing(request, reply)) return;
      await this.send(reply, await this.handle(request, 'HEAD'));
    }

    @Put(paths)
    @ApiOperation({ summary: 'Push is not supported: 405 UNSUPPORTED (this is a pull-through cache)' })
    @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
    put(): never {
      throw pushUnsupported();
    }

    @Post(paths)
    @ApiOperation({ summary: 'Blob uploads are not supported: 405 UNSUPPORTED' })
    @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
    post(): never {
      throw pushUnsupported();
    }

    @Patch(paths)
    @ApiOperation({ summary: 'Blob uploads are not supported: 405 UNSUPPORTED' })
    @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
    patch(): never {
      throw pushUnsupported();
    }

    @Delete(paths)
    @ApiOperation({ summary: 'Deleting through the pull API is not supported: 405 UNSUPPORTED (purge caches with the admin API)' })
    @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
    delete(): never {
      throw pushUnsupported();
    }

    async handle(request: FastifyRequest, method: PullMethod): Promise<PullResponse> {
      // `request.ip` asks the kernel for the peer's address (getpeername): only when requests are counted.
      if (this.rateLimiter.enabled) this.rateLimiter.check(request.ip, request.headers.authorization);
      const url = request.raw.url ?? '';
      const { route, form } = this.routeOf(request, url);
      const ns = namespaceOf(url);
      const authorized = await this.access.authorize(
        request.headers.authorization,
        route.registryId,
        route.name,
        () => requestBaseUrl(this.app.publicUrl, request),
        { mirror: form !== 'prefixed' },
      );
      const target = narrowToNamespace(authorized, ns);
      switch (route.kind) {
        case 'manifest':
          return this.manifests.manifest(target, route, method, acceptOf(request));
        case 'blob':
          return this.blobs.blob(target, route, method, single(request.headers.range));
        case 'tags': {
          const query = queryOf(url);
          return this.listings.tags(target, route, { n: pageSize(query.get('n')), last: query.get('last') ?? undefined });
        }
        case 'referrers':
          return this.listings.referrers(target, route, queryOf(url).get('artifactType') ?? undefined);
      }
    }

    /**
     * The answer to a manifest or blob pull this replica can give from memory alone, asked by the HTTP edge
     * before the framework sees the request (app.factory.ts): this credential's pull of the repository was
     * granted moments ago and the manifest or blob entry served moments ago, both remembered until any
     * change (PullAccessService, RecentManifests, RecentBlobEntries), the same answer get() and head() give
     * then. Undefined: the request takes the full path, which answers everything else, errors included.
     * Only the prefixed and `registry-mirrors` routes (the root route's registry depends on the Host as the
     * proxy settings read it), and never while PULL_RATE_LIMIT_PER_MINUTE counts requests.
     */
    rememberedAnswer(method: string, url: string, headers: IncomingHttpHeaders): RememberedAnswer | undefined {
      if ((method !== 'GET' && method !== 'HEAD') || this.rateLimiter.enabled) return undefined;
      let addressed: ReturnType<typeof addressedRoute>;
      let target: PullTarget | undefined;
      try {
        addressed = addressedRoute(url);
        if (addressed?.route.kind !== 'manifest' && addressed?.route.kind !== 'blob') return undefined;
        target = this.access.remembered(headers.authorization, addressed.route.registryId, addressed.route.name, false);
        if (!target) return undefined;
        target = narrowToNamespace(target, namespaceOf(url));
      } catch {
        return undefined; // a bad path or `ns`: the full path answers it with its error
      }
      const route = `/${PULL_PATHS[addressed.form === 'prefixed' ? 0 : 1]}`;
      if (addressed.route.kind === 'blob') {
        const pending = this.blobs.rememberedBlob(target, addressed.route, method, single(headers.range));
        if (!pending) return undefined;
        const counted = pending.then((response) => {
          if (response) this.access.countRemembered();
          return response;
        });
        return { route, pending: counted };
      }
      const response = this.manifests.rememberedManifest(target, addressed.route, method);
      if (!response) return undefined;
      this.access.countRemembered();
      return { route, response };
    }

    /** `/virtual_registries/containers/<id>/v2/` is the version check of that registry (RegistryPingService). */
    async answeredPing(request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
      const ping = DOCKER_MIRROR_PING.exec(request.raw.url ?? '');
      if (!ping) return false;
      await this.ping.answer(request, reply, parseRegistryId(ping[1]));
      return true;
    }

    /** The registry request of any of the three route forms (see the class). */
    routeOf(request: FastifyRequest, url: string): { route: RegistryRequest; form: RouteForm } {
      const addressed = addressedRoute(url);
      if (addressed) return addressed;
      const root = ROOT_ROUTE.exec(url);
      if (root) {
        const path = parseRepositoryPath(root[1]);
        const registryId = rootRegistryFor(this.app.rootRegistries, request.host);
        if (registryId === undefined) {
          throw new OciError(
            OciErrorCode.NAME_UNKNOWN,
            'no registry is served at the root /v2/ of this host: use /v2/virtual_registries/containers/<id>/<name>',
          );
        }
        return { route: { ...path, registryId }, form: 'root' };
      }
      throw new OciError(OciErrorCode.NAME_UNKNOWN, 'unknown registry path');
    }

    async send(reply: FastifyReply, response: PullResponse): Promise<void> {
      const { body } = response;
      if (isSelfWriting(body)) return sendStored(reply, response);
      void reply.status(response.status).headers(response.headers);
      await reply.send(body);
    }
  }
  return PullRoutes;
}

/**
 * The prefixed routes, `/v2/virtual_registries/containers/<id>/<name>/{manifests,blobs,tags,referrers}/...`
 * (the `container` spelling too), and the same under `/virtual_registries/containers/<id>/v2/<name>/...`
 * for Docker's `registry-mirrors` (whose `/virtual_registries/containers/<id>/v2/` is that registry's
 * version check).
 */
@Controller()
export class RegistryPullController extends pullRoutes(PULL_PATHS, PATH_DOC, true) {}

/**
 * The root `/v2/<name>/...` of the registry configured for the request's Host (MIRROR_HOST_REGISTRIES,
 * MIRROR_DEFAULT_REGISTRY), for clients that cannot put a path in a mirror's address. `/v2/` itself is
 * RegistryBaseController's.
 */
@Controller()
export class RegistryRootPullController extends pullRoutes(['v2/*'], ROOT_PATH_DOC, false) {}

/**
 * A stored blob or a running fill writes itself to the socket (large reads into reused buffers, no stream
 * stages). Fastify's hooks still see the response end (metrics, access log); a failure after the headers
 * cuts the connection, so the client sees a short body, never a complete-looking wrong one.
 */
async function sendStored(reply: FastifyReply, response: PullResponse): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  try {
    await writePullResponse(raw, response, reply.getHeaders() as OutgoingHttpHeaders);
  } catch (err) {
    if (!raw.destroyed) reply.log.warn({ err, reqId: reply.request.id }, 'serving a blob failed');
    raw.destroy();
  }
}

/**
 * Writes a pull's answer to the Node response itself, after `headers` (the request id): a stored object's
 * body writes itself (sendfile, or reused buffers), a stream is piped. Rejects when the client goes away
 * (the response is destroyed then) or the body fails (it is not: the caller says so and destroys it).
 */
export async function writePullResponse(raw: ServerResponse, response: PullResponse, headers: OutgoingHttpHeaders): Promise<void> {
  raw.writeHead(response.status, { ...headers, ...response.headers });
  const { body } = response;
  if (isSelfWriting(body)) return body.writeTo(raw);
  if (body === undefined || Buffer.isBuffer(body)) {
    raw.end(body);
    return;
  }
  const stream = body instanceof Readable ? body : new Readable().wrap(body);
  await new Promise<void>((resolve, reject) => {
    stream.once('error', reject);
    raw.once('finish', resolve);
    raw.once('close', () => {
      if (raw.writableFinished) return;
      stream.destroy();
      reject(new Error('the client closed the connection'));
    });
    stream.pipe(raw);
  });
}

function pushUnsupported(): OciError {
  return new OciError(OciErrorCode.UNSUPPORTED, 'this registry is a pull-through cache: push and delete are not supported');
}

/**
 * The registry request of a URL that names its registry (the prefixed and `registry-mirrors` forms; the
 * root form's registry depends on the Host); undefined for any other URL. A bad name or reference throws.
 */
function addressedRoute(url: string): { route: RegistryRequest; form: 'prefixed' | 'docker-mirror' } | undefined {
  const prefixed = ROUTE.exec(url);
  if (prefixed) return { route: parseRegistryRoute(prefixed[1]), form: 'prefixed' };
  const dockerMirror = DOCKER_MIRROR_ROUTE.exec(url);
  if (dockerMirror) return { route: parseRegistryPath(dockerMirror[1], dockerMirror[2]), form: 'docker-mirror' };
  return undefined;
}

/** `?ns=<host>` (containerd's mirror parameter), if given. */
function namespaceOf(url: string): string | undefined {
  return url.includes('ns=') ? (queryOf(url).get('ns') ?? undefined) : undefined;
}

function queryOf(url: string): URLSearchParams {
  const at = url.indexOf('?');
  return new URLSearchParams(at === -1 ? '' : url.slice(at + 1));
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function acceptOf(request: FastifyRequest): string | undefined {
  const accept = request.headers.accept;
  const value = Array.isArray(accept) ? accept.join(', ') : accept;
  // A bare `*/*` (or nothing) means "the defaults": every manifest type.
  return value && value.trim() !== '*/*' ? value : undefined;
}

function pageSize(value: string | null): number | undefined {
  if (value === null || !/^\d{1,6}$/.test(value)) return undefined;
  return Number(value);
}
