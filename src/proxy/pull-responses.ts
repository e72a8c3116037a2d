import type { Readable } from 'node:stream';
import { DigestVerifier, OciError, OciErrorCode, contentRange, unsatisfiedContentRange, type ByteRange } from '../oci/index.js';
import type { UpstreamResponse } from '../upstreams/client/upstream-client.js';
import { UpstreamError } from '../upstreams/client/upstream-error.js';
import type { PullResponse } from './pull-response.js';
import { whenExhausted } from './cache-policy.js';
import { WithheldTail } from './withheld-tail.js';

/** The response shapes of the pull path and the small facts about upstream answers they are built from. */

export const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };
export const BLOB_CONTENT_TYPE = 'application/octet-stream';

export function manifestResponse(digest: string, contentType: string, size: number, body: Readable | Buffer | undefined): PullResponse {
  return {
    status: 200,
    headers: {
      ...API_VERSION,
      'content-type': contentType,
      'content-length': String(size),
      'docker-content-digest': digest,
      etag: `"${digest}"`,
    },
    body,
  };
}

/** The headers of every blob answer, before its length and range. */
export function blobHeaders(digest: string): Record<string, string> {
  return {
    ...API_VERSION,
    'content-type': BLOB_CONTENT_TYPE,
    'docker-content-digest': digest,
    'accept-ranges': 'bytes',
    etag: `"${digest}"`,
  };
}

export function blobResponse(digest: string, size: number | undefined, range: ByteRange | undefined, body: Readable | undefined): PullResponse {
  const headers = blobHeaders(digest);
  if (range && size !== undefined) {
    headers['content-length'] = String(range.end - range.start + 1);
    headers['content-range'] = contentRange(range.start, range.end, size);
    return { status: 206, headers, body };
  }
  if (size !== undefined) headers['content-length'] = String(size);
  return { status: 200, headers, body };
}

export function unsatisfiable(size: number): PullResponse {
  const body = Buffer.from(JSON.stringify(new OciError(OciErrorCode.BLOB_UNKNOWN, 'requested range not satisfiable', { status: 416 })));
  return {
    status: 416,
    headers: { ...API_VERSION, 'content-range': unsatisfiedContentRange(size), 'content-type': 'application/json', 'content-length': String(body.length) },
    body,
  };
}

/**
 * A blob body from a source that is not our verified store (an upstream, another replica's fill),
 * streamed through: verified against `digest` (and `size` when known) as it passes, its last chunk held
 * back until then, so a mismatch or a cut leaves the client with a failed response, never wrong bytes.
 */
export function verifiedBlobBody(body: Readable, digest: string, size: number | undefined, onMismatch: () => void): Readable {
  const verifier = new DigestVerifier({ expected: digest, expectedSize: size });
  const withheld = new WithheldTail();
  body.on('error', (err) => verifier.destroy(err));
  verifier.on('error', (err) => {
    if (OciError.is(err)) onMismatch();
    withheld.destroy(err);
    body.destroy();
  });
  withheld.on('close', () => body.destroy());
  body.pipe(verifier).pipe(withheld);
  return withheld;
}

/** Drops an upstream body we do not want: small ones are drained (the connection stays pooled). */
export function discard(res: UpstreamResponse): void {
  res.body.on('error', () => undefined);
  const length = Number(header(res, 'content-length'));
  if (Number.isFinite(length) && length <= 64 * 1024) res.body.resume();
  else res.body.destroy();
}

export function header(res: UpstreamResponse, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function totalSizeOf(res: UpstreamResponse): number | undefined {
  const match = /\/(\d+)$/.exec(header(res, 'content-range') ?? '');
  return match ? Number(match[1]) : undefined;
}

export function statusError(status: number, upstreamId?: number): UpstreamError {
  return new UpstreamError('status', `upstream answered ${status}`, upstreamId, status);
}

/**
 * None of the upstreams has it: 404 when all said so, 503 when one of them could not answer. The
 * failures themselves (upstream addresses, token-server answers) are for operators: they are logged
 * with the request id where they happened and never sent to the client.
 */
export function notFoundOrUnavailable(code: OciErrorCode, failures: unknown[]): OciError {
  if (whenExhausted(failures.length, false) === 'not-found') return new OciError(code);
  const timeouts = failures.every((f) => f instanceof UpstreamError && f.kind === 'timeout');
  return new OciError(OciErrorCode.UNAVAILABLE, 'no upstream could be reached for this content', {
    status: timeouts ? 504 : 503,
  });
}
