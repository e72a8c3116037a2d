/**
 * An attacker's upstream for tenancy tests: a node:http server that claims to hold every manifest and blob
 * and never serves one. HEAD of `/v2/<name>/manifests/<digest>` or `/v2/<name>/blobs/<digest>` answers 200
 * with the digest echoed in Docker-Content-Digest and a plausible Content-Type and Content-Length; every
 * GET of content answers 404 with a registry-style JSON error. `/v2/` answers 200 (no auth).
 *
 *     const liar = await startLyingUpstream();
 *     // ... create an upstream with url liar.url, pull through it ...
 *     expect(liar.requests.filter((r) => r.method === 'GET')).not.toEqual([]);
 *
 * Every request is recorded, so a test can tell that a pull did reach this upstream.
 */
import { createServer, type Server } from 'node:http';
import { MEDIA_TYPES } from './image-fixtures.js';
import { listenOnLoopback } from './loopback-server.js';

export interface LyingUpstreamOptions {
  /** The Content-Length claimed on HEAD; default 4096 for manifests, 1 MiB for blobs. */
  claimedSize?: { manifest: number; blob: number };
}

export interface LyingUpstreamRequest {
  method: string;
  /** The request path with query string. */
  path: string;
  status: number;
}

export interface LyingUpstream {
  /** `http://127.0.0.1:<port>`: use as an upstream URL. */
  readonly url: string;
  /** Every request seen so far. */
  readonly requests: readonly LyingUpstreamRequest[];
  /** The requests for `/v2/.../<kind>/<digest>` with this method. */
  requestsFor(method: 'GET' | 'HEAD', digest: string): LyingUpstreamRequest[];
  close(): Promise<void>;
}

const CONTENT_PATH = /^\/v2\/(.+)\/(manifests|blobs)\/([^/?]+)/;

export async function startLyingUpstream(options: LyingUpstreamOptions = {}): Promise<LyingUpstream> {
  const claimed = options.claimedSize ?? { manifest: 4096, blob: 1024 * 1024 };
  const requests: LyingUpstreamRequest[] = [];

  const server: Server = createServer((req, res) => {
    req.resume();
    const path = req.url ?? '';
    const content = CONTENT_PATH.exec(path);
    const record: LyingUpstreamRequest = { method: req.method ?? '', path, status: 0 };
    requests.push(record);
    const answer = (status: number, headers: Record<string, string>, body?: string): void => {
      record.status = status;
      res.writeHead(status, { 'docker-distribution-api-version': 'registry/2.0', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (!content) {
      if (path === '/v2/' || path === '/v2') return answer(200, { 'content-type': 'application/json', 'content-length': '2' }, '{}');
      return answer(404, { 'content-type': 'text/plain', 'content-length': '9' }, 'not found');
    }
    const [, , kind, digest] = content;
    const isManifest = kind === 'manifests';
    if (req.method === 'HEAD') {
      return answer(200, {
        'docker-content-digest': decodeURIComponent(digest),
        'content-type': isManifest ? MEDIA_TYPES.dockerManifest : 'application/octet-stream',
        'content-length': String(isManifest ? claimed.manifest : claimed.blob),
        etag: `"${decodeURIComponent(digest)}"`,
      });
    }
    const body = JSON.stringify({ errors: [{ code: isManifest ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN', message: 'not here' }] });
    answer(404, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }, body);
  });
  const url = await listenOnLoopback(server);

  return {
    url,
    requests,
    requestsFor(method, digest) {
      return requests.filter((r) => r.method === method && CONTENT_PATH.exec(r.path)?.[3] === digest);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
