/**
 * Distribution 2.8 writes one Apache "combined" access-log line per HTTP request to its stdout
 * (gorilla/handlers CombinedLoggingHandler, on unless `log.accesslog.disabled`), after the handler returns:
 *
 *     127.0.0.1 - - [27/Nov/2026:18:39:43 +0000] "HEAD /v2/foo/manifests/latest HTTP/1.1" 404 96 "" "curl/7.88.1"
 *
 * It covers every request, including 401 challenges and requests a client abandoned. `bytes` is what the
 * handler wrote as body (for HEAD it is the Content-Length the handler announced, no body goes out).
 */

/** What a `/v2/...` request addressed, in registry API terms. */
export type RegistryRequestKind = 'base' | 'manifest' | 'blob' | 'upload' | 'tags' | 'catalog' | 'other';

export interface AccessLogEntry {
  method: string;
  /** The request path without the query string. */
  path: string;
  /** The request URI as logged (path and query). */
  uri: string;
  status: number;
  /** Body bytes written by the handler. */
  bytes: number;
  userAgent: string;
  remoteAddr: string;
  time: Date;
  kind: RegistryRequestKind;
  /** Repository name for manifest/blob/upload/tags requests (`library/alpine`). */
  repository?: string;
  /** Tag or digest for manifest requests, digest for blob requests. */
  reference?: string;
}

const COMBINED_LINE = /^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+) ([^"]+)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"\s*$/;

const MONTHS: Record<string, string> = {
  Jan: '01',
  Feb: '02',
  Mar: '03',
  Apr: '04',
  May: '05',
  Jun: '06',
  Jul: '07',
  Aug: '08',
  Sep: '09',
  Oct: '10',
  Nov: '11',
  Dec: '12',
};

/** `27/Nov/2026:18:39:43 +0000` -> Date. */
function parseCommonLogTime(raw: string): Date {
  const m = /^(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(raw);
  if (!m) return new Date(NaN);
  return new Date(`${m[3]}-${MONTHS[m[2]] ?? '01'}-${m[1]}T${m[4]}:${m[5]}:${m[6]}${m[7]}${m[8]}:${m[9]}`);
}

/** Classifies a request path the way the registry routes it. */
export function classifyRegistryPath(path: string): Pick<AccessLogEntry, 'kind' | 'repository' | 'reference'> {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  let m = /^\/v2\/(.+)\/blobs\/uploads\/?(.*)$/.exec(path);
  if (m) return { kind: 'upload', repository: m[1], reference: m[2] || undefined };
  m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
  if (m) return { kind: m[2] === 'blobs' ? 'blob' : 'manifest', repository: m[1], reference: decodeURIComponent(m[3]) };
  m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
  if (m) return { kind: 'tags', repository: m[1] };
  return { kind: 'other' };
}

/** Parses one combined-format line; undefined for anything else (e.g. a stray non-access line). */
export function parseAccessLogLine(line: string): AccessLogEntry | undefined {
  const m = COMBINED_LINE.exec(line);
  if (!m) return undefined;
  const uri = m[5];
  const queryAt = uri.indexOf('?');
  const path = queryAt >= 0 ? uri.slice(0, queryAt) : uri;
  return {
    remoteAddr: m[1],
    time: parseCommonLogTime(m[3]),
    method: m[4],
    uri,
    path,
    status: Number(m[7]),
    bytes: m[8] === '-' ? 0 : Number(m[8]),
    userAgent: m[10].replace(/\\(.)/g, '$1'),
    ...classifyRegistryPath(path),
  };
}

/** Convenience filters for request-count assertions. */
export const accessLog = {
  /** Blob body downloads (`GET .../blobs/<digest>` answered 200 or 206), optionally for one digest. */
  blobDownloads(entries: AccessLogEntry[], digest?: string): AccessLogEntry[] {
    return entries.filter((e) => e.kind === 'blob' && e.method === 'GET' && (e.status === 200 || e.status === 206) && (!digest || e.reference === digest));
  },
  /** Manifest requests (GET and HEAD, any status), optionally for one repository and/or reference. */
  manifestRequests(entries: AccessLogEntry[], repository?: string, reference?: string): AccessLogEntry[] {
    return entries.filter((e) => e.kind === 'manifest' && (!repository || e.repository === repository) && (!reference || e.reference === reference));
  },
  /** Total body bytes the registry sent for successful blob GETs. */
  blobBytesServed(entries: AccessLogEntry[]): number {
    return accessLog.blobDownloads(entries).reduce((sum, e) => sum + e.bytes, 0);
  },
};
