import { Controller, Delete, Get, Head, Inject, Patch, Post, Put, Req, Res, UseFilters } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestBaseUrl } from '../auth/registry-token.service.js';
import { appConfig, type AppConfig } from '../config/config.js';
import { OciError, OciErrorCode, parseRegistryRoute } from '../oci/index.js';
import { OciExceptionFilter } from './oci-exception.filter.js';
import { PullAccessService } from './pull-access.service.js';
import type { PullResponse } from './pull-response.js';
import { PullRateLimiter } from './pull-rate-limiter.js';
import { ProxyBlobStore, type PullMethod } from './proxy-blob-store.js';
import { PullService } from './pull.service.js';

const ROUTE = /^\/v2\/virtual_registries\/containers?\/([^?]*)/;
const PATH_DOC = 'Everything after the spelling: `<registry id>/<name>/manifests/<tag|digest>`, `<id>/<name>/blobs/<digest>`, `<id>/<name>/tags/list` or `<id>/<name>/referrers/<digest>`';

/**
 * The registry pull API (OCI distribution spec, pull side) of every virtual registry:
 * `/v2/virtual_registries/containers/<id>/<name>/{manifests,blobs,tags,referrers}/...`
 * (the `container` spelling too). Authorisation, then one call into PullService.
 */
@ApiTags('registry (pull API)')
@ApiBearerAuth('bearer')
@ApiParam({ name: 'spelling', enum: ['containers', 'container'] })
@ApiParam({ name: 'path', description: PATH_DOC })
@Controller('v2/virtual_registries')
@UseFilters(OciExceptionFilter)
export class RegistryPullController {
  constructor(
    @Inject(PullService) private readonly pull: PullService,
    @Inject(ProxyBlobStore) private readonly blobs: ProxyBlobStore,
    @Inject(PullAccessService) private readonly access: PullAccessService,
    @Inject(PullRateLimiter) private readonly rateLimiter: PullRateLimiter,
    @Inject(appConfig.KEY) private readonly app: AppConfig,
  ) {}

  @Get(':spelling/*')
  @ApiOperation({ summary: 'Pull a manifest or blob, list tags or referrers (served from cache, or streamed from the first upstream that has it)' })
  @ApiResponse({ status: 200, description: 'The content; `Docker-Content-Digest`, exact `Content-Type`, `Content-Length`, `ETag`' })
  @ApiResponse({ status: 206, description: 'A byte range of a blob (`Range: bytes=a-b`)' })
  @ApiResponse({ status: 401, description: 'UNAUTHORIZED: get a token at the realm named by `WWW-Authenticate`' })
  @ApiResponse({ status: 404, description: 'MANIFEST_UNKNOWN, BLOB_UNKNOWN or NAME_UNKNOWN' })
  @ApiResponse({ status: 429, description: 'TOOMANYREQUESTS (PULL_RATE_LIMIT_PER_MINUTE), with Retry-After' })
  @ApiResponse({ status: 503, description: 'UNAVAILABLE: no upstream answered and nothing is cached' })
  async get(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    await this.send(reply, await this.handle(request, 'GET'));
  }

  @Head(':spelling/*')
  @ApiOperation({ summary: 'Check a manifest or blob exists (headers only)' })
  async head(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    await this.send(reply, await this.handle(request, 'HEAD'));
  }

  @Put(':spelling/*')
  @ApiOperation({ summary: 'Push is not supported: 405 UNSUPPORTED (this is a pull-through cache)' })
  @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
  put(): never {
    throw pushUnsupported();
  }

  @Post(':spelling/*')
  @ApiOperation({ summary: 'Blob uploads are not supported: 405 UNSUPPORTED' })
  @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
  post(): never {
    throw pushUnsupported();
  }

  @Patch(':spelling/*')
  @ApiOperation({ summary: 'Blob uploads are not supported: 405 UNSUPPORTED' })
  @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
  patch(): never {
    throw pushUnsupported();
  }

  @Delete(':spelling/*')
  @ApiOperation({ summary: 'Deleting through the pull API is not supported: 405 UNSUPPORTED (purge caches with the admin API)' })
  @ApiResponse({ status: 405, description: 'UNSUPPORTED' })
  delete(): never {
    throw pushUnsupported();
  }

  private async handle(request: FastifyRequest, method: PullMethod): Promise<PullResponse> {
    this.rateLimiter.check(request.ip, request.headers.authorization);
    const url = request.raw.url ?? '';
    const match = ROUTE.exec(url);
    if (!match) throw new OciError(OciErrorCode.NAME_UNKNOWN, 'unknown registry path');
    const route = parseRegistryRoute(match[1]);
    const target = await this.access.authorize(
      request.headers.authorization,
      route.registryId,
      route.name,
      () => requestBaseUrl(this.app.publicUrl, request),
    );
    switch (route.kind) {
      case 'manifest':
        return this.pull.manifest(target, route, method, acceptOf(request));
      case 'blob':
        return this.blobs.blob(target, route, method, single(request.headers.range));
      case 'tags': {
        const query = queryOf(url);
        return this.pull.tags(target, route, { n: pageSize(query.get('n')), last: query.get('last') ?? undefined });
      }
      case 'referrers':
        return this.pull.referrers(target, route, queryOf(url).get('artifactType') ?? undefined);
    }
  }

  private async send(reply: FastifyReply, response: PullResponse): Promise<void> {
    void reply.status(response.status).headers(response.headers);
    await reply.send(response.body);
  }
}

function pushUnsupported(): OciError {
  return new OciError(OciErrorCode.UNSUPPORTED, 'this registry is a pull-through cache: push and delete are not supported');
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
