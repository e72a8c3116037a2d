import { Inject, Injectable, Logger } from '@nestjs/common';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { MetricsService } from '../observability/metrics.service.js';
import { readManifestBody } from '../oci/manifest-body.js';
import { OciError, OciErrorCode, relativePathOf, type ReferrersRequest, type TagsRequest } from '../oci/index.js';
import { UpstreamClient } from '../upstreams/client/upstream-client.js';
import { UpstreamError, classifyUpstreamError } from '../upstreams/client/upstream-error.js';
import { upstreamAnswer } from './cache-policy.js';
import { API_VERSION, discard, header, notFoundOrUnavailable, statusError } from './pull-responses.js';
import type { PullTarget, PullUpstream } from '../upstreams/pull-target.js';
import type { PullResponse } from './pull-response.js';

/**
 * The listings of the pull API, passed through and never cached: `tags/list` merged across the
 * registry's upstreams, and `referrers` from the first upstream that supports the API.
 */
@Injectable()
export class UpstreamListings {
  private readonly logger = new Logger(UpstreamListings.name);

  constructor(
    private readonly upstreams: UpstreamClient,
    private readonly metrics: MetricsService,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
  ) {}

  /** tags/list: each upstream's list (404s skipped), merged in upstream order without duplicates. */
  async tags(target: PullTarget, request: TagsRequest, query: { n?: number; last?: string }): Promise<PullResponse> {
    const failures: unknown[] = [];
    const seen = new Set<string>();
    const tags: string[] = [];
    let found = false;
    for (const upstream of target.upstreams) {
      try {
        const res = await this.upstreams.tagsList(upstream.descriptor, request.name.value);
        const answer = upstreamAnswer(res.status);
        if (answer === 'found') {
          const body = JSON.parse((await readManifestBody(res.body, this.limits.maxManifestSize)).toString('utf8')) as { tags?: unknown };
          found = true;
          for (const tag of Array.isArray(body.tags) ? body.tags : []) {
            if (typeof tag === 'string' && !seen.has(tag)) {
              seen.add(tag);
              tags.push(tag);
            }
          }
        } else {
          discard(res);
          if (answer === 'failed') failures.push(this.upstreamFailed(upstream, request.name.value, statusError(res.status)));
        }
      } catch (err) {
        failures.push(OciError.is(err) ? err : this.upstreamFailed(upstream, request.name.value, err));
      }
    }
    if (!found) throw notFoundOrUnavailable(OciErrorCode.NAME_UNKNOWN, failures);
    let page = query.last !== undefined ? tags.filter((t) => t > query.last!) : tags;
    if (query.last !== undefined) page = page.sort();
    if (query.n !== undefined) page = page.slice(0, query.n);
    const body = Buffer.from(JSON.stringify({ name: request.name.value, tags: page }));
    return { status: 200, headers: { ...API_VERSION, 'content-type': 'application/json', 'content-length': String(body.length) }, body };
  }

  /** referrers: the first upstream that supports the API answers; an empty index otherwise (OCI 1.1). */
  async referrers(target: PullTarget, request: ReferrersRequest, artifactType?: string): Promise<PullResponse> {
    const path = relativePathOf(request) + (artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '');
    for (const upstream of target.upstreams) {
      try {
        const res = await this.upstreams.get(upstream.descriptor, path, { accept: 'application/vnd.oci.image.index.v1+json' });
        if (upstreamAnswer(res.status) === 'found') {
          const bytes = await readManifestBody(res.body, this.limits.maxManifestSize);
          const headers: Record<string, string> = {
            ...API_VERSION,
            'content-type': 'application/vnd.oci.image.index.v1+json',
            'content-length': String(bytes.length),
          };
          const filtered = header(res, 'oci-filters-applied');
          if (filtered) headers['oci-filters-applied'] = filtered;
          return { status: 200, headers, body: bytes };
        }
        discard(res);
      } catch (err) {
        this.upstreamFailed(upstream, path, err);
      }
    }
    const empty = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }));
    return {
      status: 200,
      headers: { ...API_VERSION, 'content-type': 'application/vnd.oci.image.index.v1+json', 'content-length': String(empty.length) },
      body: empty,
    };
  }

  private upstreamFailed(upstream: PullUpstream, path: string, err: unknown): UpstreamError {
    const failure = err instanceof UpstreamError ? err : classifyUpstreamError(err, upstream.id);
    this.metrics.upstreamErrors.inc({ kind: failure.kind });
    this.logger.warn(`upstream ${upstream.id} failed for ${path}: ${failure.message}`);
    return failure;
  }
}
