/**
 * A misbehaving upstream for e2e tests: a small node:http reverse proxy in front of a real registry
 * (usually {@link startUpstreamRegistry}) that forwards every request unchanged until told to fail.
 *
 *     const faulty = await startFaultyUpstream(upstream.url);
 *     faulty.set({ kind: 'status', status: 500 });                       // every request -> 500
 *     faulty.set({ kind: 'status', status: 429 }, { method: 'HEAD' });    // only HEADs -> 429
 *     faulty.set({ kind: 'corrupt' }, { path: /\/blobs\/sha256:abc/ });   // flip one byte of that blob body
 *     faulty.set({ kind: 'hang' });                                       // accept, never answer
 *     faulty.set({ kind: 'throttle', bytesPerSecond: 8 << 20 });          // forward bodies slowly
 *     faulty.set({ kind: 'delay', ms: 500 });                             // forward, half a second late
 *     faulty.forward();                                                   // back to normal
 *     faulty.addHeaders({ 'ratelimit-remaining': '76;w=21600' });         // on every answer from now on
 *
 * Only requests matching the rule's filter misbehave; the rest are forwarded. Every request is recorded
 * (method, path, what was done with it) so tests can count what reached the "upstream".
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';

export type FaultMode =
  | { kind: 'forward' }
  /** Answer with this status and a registry-style JSON error body (Retry-After for 429). */
  | { kind: 'status'; status: number; retryAfterSeconds?: number }
  /** Forward, but flip one byte of successful GET bodies (default: the byte in the middle of the body). */
  | { kind: 'corrupt'; offset?: number }
  /** Accept the request and never answer (until the proxy is closed or the client gives up). */
  | { kind: 'hang' }
  /** Forward, sending response bodies no faster than this. */
  | { kind: 'throttle'; bytesPerSecond: number }
  /** Forward after this many milliseconds (a distant upstream: slow to answer, then normal). */
  | { kind: 'delay'; ms: number };

export interface FaultFilter {
  method?: 'GET' | 'HEAD';
  /** Tested against the request path (with query string). */
  path?: RegExp;
}

export interface FaultyRequest {
  method: string;
  path: string;
  /** What the proxy did: the mode that applied (`forward` when none did). */
  handling: FaultMode['kind'];
  /** The status sent to the client (undefined while hanging or when the upstream could not be reached). */
  status?: number;
}

export interface FaultyUpstream {
  /** `http://127.0.0.1:<port>`: use as an upstream URL. */
  readonly url: string;
  readonly port: number;
  /** Makes matching requests (all when no filter) misbehave from now on; replaces the previous rule. */
  set(mode: FaultMode, filter?: FaultFilter): void;
  /** Forward everything again (requests already hanging stay hung). */
  forward(): void;
  /** Adds these headers to every answer from now on (forwarded or not), replacing the previous ones. */
  addHeaders(headers: Record<string, string>): void;
  /** Every request seen so far. */
  readonly requests: readonly FaultyRequest[];
  /** Drops all open connections (hung ones included) and stops listening. */
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/** Flips the byte at `offset` of the stream (XOR 0xff), passing everything else through. */
class ByteFlip extends Transform {
  private position = 0;

  constructor(private readonly offset: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const start = this.position;
    this.position += chunk.length;
    if (this.offset >= start && this.offset < this.position) {
      const copy = Buffer.from(chunk);
      copy[this.offset - start] ^= 0xff;
      callback(null, copy);
      return;
    }
    callback(null, chunk);
  }
}

/** Lets at most `bytesPerSecond` through, in slices of at most 64 KiB. */
class Throttle extends Transform {
  private readonly started = Date.now();
  private sent = 0;

  constructor(private readonly bytesPerSecond: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const send = (offset: number): void => {
      if (offset >= chunk.length) {
        callback();
        return;
      }
      const slice = chunk.subarray(offset, offset + 64 * 1024);
      const due = this.started + ((this.sent + slice.length) / this.bytesPerSecond) * 1000;
      const wait = Math.max(0, due - Date.now());
      setTimeout(() => {
        this.sent += slice.length;
        this.push(slice);
        send(offset + slice.length);
      }, wait);
    };
    send(0);
  }
}

function matches(filter: FaultFilter | undefined, req: IncomingMessage): boolean {
  if (!filter) return true;
  if (filter.method && req.method !== filter.method) return false;
  if (filter.path && !filter.path.test(req.url ?? '')) return false;
  return true;
}

/** Starts the proxy on a random loopback port, forwarding to `targetUrl` (`http://127.0.0.1:<port>`). */
export async function startFaultyUpstream(targetUrl: string): Promise<FaultyUpstream> {
  const target = new URL(targetUrl);
  let rule: { mode: FaultMode; filter?: FaultFilter } = { mode: { kind: 'forward' } };
  let extraHeaders: Record<string, string> = {};
  const requests: FaultyRequest[] = [];
  const sockets = new Set<Socket>();

  const forward = (req: IncomingMessage, res: ServerResponse, record: FaultyRequest, mode: FaultMode): void => {
    const headers = { ...req.headers, host: target.host };
    const upstream = httpRequest({ hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (up) => {
      record.status = up.statusCode;
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(up.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
      }
      res.writeHead(up.statusCode ?? 502, { ...out, ...extraHeaders });
      const ok = (up.statusCode ?? 0) >= 200 && (up.statusCode ?? 0) < 300 && req.method === 'GET';
      let body: NodeJS.ReadableStream = up;
      if (mode.kind === 'corrupt' && ok) {
        const length = Number(up.headers['content-length']);
        const offset = mode.offset ?? (Number.isFinite(length) && length > 0 ? Math.floor(length / 2) : 0);
        body = up.pipe(new ByteFlip(offset));
      } else if (mode.kind === 'throttle' && ok) {
        body = up.pipe(new Throttle(mode.bytesPerSecond));
      }
      up.on('error', () => res.destroy());
      body.pipe(res);
      res.on('close', () => up.destroy());
    });
    upstream.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('faulty upstream: target unreachable');
      } else {
        res.destroy();
      }
    });
    req.pipe(upstream);
  };

  const server: Server = createServer((req, res) => {
    const mode = matches(rule.filter, req) ? rule.mode : ({ kind: 'forward' } as const);
    const record: FaultyRequest = { method: req.method ?? '', path: req.url ?? '', handling: mode.kind };
    requests.push(record);
    switch (mode.kind) {
      case 'status': {
        const code = mode.status === 429 ? 'TOOMANYREQUESTS' : 'UNKNOWN';
        const body = JSON.stringify({ errors: [{ code, message: `faulty upstream answers ${mode.status}` }] });
        const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
        if (mode.status === 429) headers['retry-after'] = String(mode.retryAfterSeconds ?? 30);
        record.status = mode.status;
        res.writeHead(mode.status, { ...extraHeaders, ...headers });
        res.end(req.method === 'HEAD' ? undefined : body);
        req.resume();
        return;
      }
      case 'hang':
        req.resume();
        return;
      case 'delay':
        setTimeout(() => forward(req, res, record, mode), mode.ms);
        return;
      default:
        forward(req, res, record, mode);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    set(mode, filter) {
      rule = { mode, filter };
    },
    forward() {
      rule = { mode: { kind: 'forward' } };
    },
    addHeaders(headers) {
      extraHeaders = { ...headers };
    },
    requests,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
