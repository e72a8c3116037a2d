/**
 * A registry client for e2e tests made of raw node:http requests: the path is sent exactly as written
 * (fetch would resolve `..` and re-encode), and blob bodies are hashed as they stream in, never buffered,
 * with timings of the first and last byte and the option to hang up after some bytes.
 */
import { createHash } from 'node:crypto';
import { request, type IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request with the path as written; the body is read as text (for error JSON and small answers). */
export function rawRequest(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(baseUrl);
    const req = request({ hostname, port, path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 64 * 1024) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export interface StreamedDownload {
  status: number;
  headers: IncomingHttpHeaders;
  /** Content-Length announced, if any. */
  declaredLength?: number;
  /** Body bytes received. */
  received: number;
  /** sha256 of the bytes received. */
  digest: string;
  /** The response ended normally (not aborted, not errored, not hung up by us). */
  complete: boolean;
  /** Set when the response or the connection failed. */
  error?: Error;
  startedAt: number;
  headersAt?: number;
  firstByteAt?: number;
  endedAt: number;
}

export interface StreamOptions {
  headers?: Record<string, string>;
  method?: 'GET' | 'HEAD';
  /** Hang up once this many body bytes have arrived. */
  abortAfterBytes?: number;
  /** Stops reading once this many body bytes have arrived, until `until` settles (a slow client). */
  pauseAfterBytes?: { bytes: number; until: Promise<unknown> };
  /** Called once, when the first body byte arrives. */
  onFirstByte?: () => void | Promise<void>;
  /** Called after every body chunk, with the bytes received so far (to act on a download's progress). */
  onProgress?: (received: number) => void;
  timeoutMs?: number;
}

/** Downloads `path` from `baseUrl`, hashing the body as it streams; resolves (never rejects) with what happened. */
export function streamDownload(baseUrl: string, path: string, options: StreamOptions = {}): Promise<StreamedDownload> {
  return new Promise((resolve) => {
    const { hostname, port } = new URL(baseUrl);
    const hash = createHash('sha256');
    const result: StreamedDownload = { status: 0, headers: {}, received: 0, digest: '', complete: false, startedAt: Date.now(), endedAt: 0 };
    let settled = false;
    let paused = false;
    const finish = (complete: boolean, error?: Error) => {
      if (settled) return;
      settled = true;
      result.complete = complete;
      result.error = error;
      result.endedAt = Date.now();
      result.digest = `sha256:${hash.digest('hex')}`;
      resolve(result);
    };
    const req = request({ hostname, port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      result.status = res.statusCode ?? 0;
      result.headers = res.headers;
      result.headersAt = Date.now();
      const length = Number(res.headers['content-length']);
      if (Number.isFinite(length)) result.declaredLength = length;
      res.on('data', (chunk: Buffer) => {
        if (result.firstByteAt === undefined) {
          result.firstByteAt = Date.now();
          void options.onFirstByte?.();
        }
        hash.update(chunk);
        result.received += chunk.length;
        options.onProgress?.(result.received);
        const pause = options.pauseAfterBytes;
        if (pause && !paused && result.received >= pause.bytes) {
          paused = true;
          res.pause();
          void pause.until.finally(() => res.resume());
        }
        if (options.abortAfterBytes !== undefined && result.received >= options.abortAfterBytes) {
          req.destroy();
          finish(false, new Error('hung up by the test client'));
        }
      });
      res.on('end', () => finish(!res.errored && res.complete));
      res.on('aborted', () => finish(false, new Error('response aborted')));
      res.on('error', (err) => finish(false, err));
      res.on('close', () => finish(res.complete && !res.errored, res.complete ? undefined : new Error('connection closed before the end')));
    });
    req.setTimeout(options.timeoutMs ?? 120_000, () => req.destroy(new Error('timed out')));
    req.on('error', (err) => finish(false, err));
    req.end();
  });
}
