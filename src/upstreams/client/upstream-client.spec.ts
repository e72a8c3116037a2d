import { arrayBuffer, json, text } from 'node:stream/consumers';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { UpstreamConfig } from '../../config/config.js';
import { UpstreamClient, type UpstreamDescriptor, type UpstreamRequestEvent } from './upstream-client.js';
import { classifyUpstreamError, NOT_PUBLIC, UpstreamError } from './upstream-error.js';

/**
 * Integration tests against real HTTP servers on 127.0.0.1 (a registry, a token server, a blob "CDN").
 * Assertions are about what the servers saw and what the caller gets: statuses, headers, bytes, errors.
 */

interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

interface TestServer {
  url: string;
  port: number;
  seen: SeenRequest[];
  connections: number;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

const servers: TestServer[] = [];
const clients: UpstreamClient[] = [];

async function startServer(handler: Handler): Promise<TestServer> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      res.destroy(err as Error);
    });
  });
  const state: TestServer = {
    url: '',
    port: 0,
    seen,
    connections: 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('connection', () => state.connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}`;
  servers.push(state);
  return state;
}

function newClient(overrides: Partial<UpstreamConfig> = {}): UpstreamClient {
  const client = new UpstreamClient({
    allowPrivate: true,
    allowlist: [],
    connectTimeoutMs: 2000,
    headersTimeoutMs: 2000,
    bodyTimeoutMs: 2000,
    breakerFailures: 3,
    breakerCooldownMs: 30_000,
    breakerMaxCooldownMs: 600_000,
    negativeCacheMs: 30_000,
    rateLimitReserve: 10,
    ...overrides,
  });
  clients.push(client);
  return client;
}

function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}

/** A docker token server: issues tok-1, tok-2, ... and records what it was asked. */
async function startTokenServer(options: { expiresIn?: number; credentials?: string; delayMs?: number } = {}) {
  const issued: string[] = [];
  const server = await startServer(async (req, res) => {
    if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs)); // deliberate: a slow token server
    if (!req.url?.startsWith('/token?')) {
      res.writeHead(404).end();
      return;
    }
    if (options.credentials && req.headers.authorization !== options.credentials) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
      return;
    }
    const token = `tok-${issued.length + 1}`;
    issued.push(token);
    const body: Record<string, unknown> = { access_token: token, issued_at: new Date().toISOString() };
    if (options.expiresIn !== undefined) body.expires_in = options.expiresIn;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  return { server, issued };
}

/** A registry that wants a bearer token from `realm`; `accepts` decides which tokens are valid. */
async function startBearerRegistry(realm: () => string, accepts: (token: string) => boolean, serve?: Handler) {
  return startServer(async (req, res) => {
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    if (!token || !accepts(token)) {
      const name = /^\/v2\/(.+)\/(?:manifests|blobs|tags)\//.exec(req.url ?? '')?.[1] ?? 'x';
      res
        .writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="${realm()}",service="test-registry",scope="repository:${name}:pull"`,
        })
        .end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    if (serve) return serve(req, res);
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': 'sha256:abc' });
    res.end(req.method === 'HEAD' ? undefined : '{"schemaVersion":2}');
  });
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const manifest = '/library/alpine/manifests/latest';

describe('UpstreamClient bearer token flow', () => {
  it('anonymous: N sequential and N concurrent requests share exactly one token fetch', async () => {
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const discovered: [number | string, string, string][] = [];
    const client = newClient();
    client.addObserver({ onRealmDiscovered: (id, authUrl, upstreamUrl) => discovered.push([id, authUrl, upstreamUrl]) });
    const upstream: UpstreamDescriptor = { id: 7, url: `${registry.url}/v2/` };

    for (let i = 0; i < 5; i++) {
      const res = await client.get(upstream, manifest, { accept: 'application/vnd.oci.image.manifest.v1+json' });
      expect(res.status).toBe(200);
      expect(await text(res.body)).toBe('{"schemaVersion":2}');
      expect(res.authUrl).toBe(`${tokens.server.url}/token?service=test-registry`);
    }
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => client.get(upstream, manifest)));
    for (const res of concurrent) {
      expect(res.status).toBe(200);
      await text(res.body);
    }

    expect(tokens.server.seen).toHaveLength(1);
    const tokenRequest = new URL(tokens.server.seen[0].url, tokens.server.url);
    expect(tokenRequest.searchParams.get('service')).toBe('test-registry');
    expect(tokenRequest.searchParams.get('scope')).toBe('repository:library/alpine:pull');
    expect(tokens.server.seen[0].headers.authorization).toBeUndefined();
    // only the very first registry request went without a token; the rest sent it up front
    expect(registry.seen.filter((r) => !r.headers.authorization)).toHaveLength(1);
    expect(registry.seen[0].headers.accept).toBe('application/vnd.oci.image.manifest.v1+json');
    // the realm is reported with the (normalised) upstream URL it was learnt from
    expect(discovered).toEqual([[7, `${tokens.server.url}/token?service=test-registry`, registry.url]]);
  });

  it('concurrent cold requests (realm not yet known) make one token fetch', async () => {
    const tokens = await startTokenServer({ delayMs: 50 });
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const client = newClient();
    const results = await Promise.all(Array.from({ length: 12 }, () => client.head({ id: 1, url: registry.url }, manifest)));
    expect(results.map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(results[0].headers['docker-content-digest']).toBe('sha256:abc');
    expect(tokens.server.seen).toHaveLength(1);
  });

  it('uses one token per scope (repository) and per upstream', async () => {
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const client = newClient();
    await client.head({ id: 1, url: registry.url }, '/library/alpine/manifests/latest');
    await client.head({ id: 1, url: registry.url }, '/library/busybox/blobs/sha256:0123');
    await client.head({ id: 1, url: registry.url }, '/library/alpine/manifests/3.20');
    await client.head({ id: 2, url: registry.url }, '/library/alpine/manifests/latest');
    const scopes = tokens.server.seen.map((r) => new URL(r.url, 'http://x').searchParams.get('scope'));
    expect(scopes).toEqual(['repository:library/alpine:pull', 'repository:library/busybox:pull', 'repository:library/alpine:pull']);
  });

  it('fetches tokens with the upstream credentials, and reports bad credentials as a 401 status error', async () => {
    const tokens = await startTokenServer({ credentials: basic('alice', 's3cret:pw') });
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const client = newClient();
    const res = await client.get({ id: 1, url: registry.url, username: 'alice', password: 's3cret:pw' }, manifest);
    expect(res.status).toBe(200);
    await res.body.dump();
    expect(tokens.server.seen[0].headers.authorization).toBe(basic('alice', 's3cret:pw'));
    // the registry itself never receives the basic credentials
    expect(registry.seen.every((r) => !String(r.headers.authorization ?? '').startsWith('Basic'))).toBe(true);

    const err = await client.get({ id: 2, url: registry.url, username: 'alice', password: 'wrong' }, manifest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'status', status: 401, upstreamId: 2 });
    expect((err as UpstreamError).isOutage).toBe(false);
  });

  it('fetches a new token once the cached one expires', async () => {
    // The token's second of life runs out on a faked wall clock (Date only: timers and I/O stay real).
    jest.useFakeTimers({
      doNotFake: [
        'hrtime',
        'nextTick',
        'performance',
        'queueMicrotask',
        'setImmediate',
        'clearImmediate',
        'setInterval',
        'clearInterval',
        'setTimeout',
        'clearTimeout',
      ],
    });
    try {
      const tokens = await startTokenServer({ expiresIn: 1 });
      const registry = await startBearerRegistry(
        () => `${tokens.server.url}/token`,
        (t) => tokens.issued.includes(t),
      );
      const client = newClient();
      const upstream = { id: 1, url: registry.url };
      expect((await client.head(upstream, manifest)).status).toBe(200);
      jest.setSystemTime(Date.now() + 800);
      expect((await client.head(upstream, manifest)).status).toBe(200);
      expect(tokens.issued).toEqual(['tok-1']);
      jest.setSystemTime(Date.now() + 200);
      expect((await client.head(upstream, manifest)).status).toBe(200);
      expect(tokens.issued).toEqual(['tok-1', 'tok-2']);
      expect(registry.seen.at(-1)?.headers.authorization).toBe('Bearer tok-2');
    } finally {
      jest.useRealTimers();
    }
  });

  it('drops a cached token the registry refuses and retries once with a new one', async () => {
    const tokens = await startTokenServer({ expiresIn: 3600 });
    let revoked = new Set<string>();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t) && !revoked.has(t),
    );
    const client = newClient();
    const upstream = { id: 1, url: registry.url };
    expect((await client.head(upstream, manifest)).status).toBe(200);
    revoked = new Set(['tok-1']);
    const results = await Promise.all(Array.from({ length: 5 }, () => client.head(upstream, manifest)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(tokens.issued).toEqual(['tok-1', 'tok-2']);

    // a registry that refuses every token: the client retries once per request, then returns the 401
    revoked = new Set(['tok-1', 'tok-2', 'tok-3', 'tok-4']);
    const denied = await client.get(upstream, manifest);
    expect(denied.status).toBe(401);
    expect(await json(denied.body)).toEqual({ errors: [{ code: 'UNAUTHORIZED' }] });
    expect(tokens.issued).toEqual(['tok-1', 'tok-2', 'tok-3']);
  });

  it('does not refetch a token for insufficient_scope (repository missing or private)', async () => {
    const tokens = await startTokenServer({ expiresIn: 3600 });
    const registry = await startServer((req, res) => {
      const auth = req.headers.authorization;
      const error = auth ? ',error="insufficient_scope"' : '';
      res
        .writeHead(401, { 'www-authenticate': `Bearer realm="${tokens.server.url}/token",service="s",scope="repository:private/repo:pull"${error}` })
        .end('{"errors":[{"code":"UNAUTHORIZED"}]}');
    });
    const client = newClient();
    for (let i = 0; i < 3; i++) {
      const res = await client.head({ id: 1, url: registry.url }, '/private/repo/manifests/latest');
      expect(res.status).toBe(401);
    }
    expect(tokens.issued).toEqual(['tok-1']);
    // first: anonymous, then with the new token; afterwards one request each with the cached token
    expect(registry.seen.map((r) => r.headers.authorization ?? '-')).toEqual(['-', 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1']);
  });

  it('forgets tokens when asked and when the upstream credentials change', async () => {
    const tokens = await startTokenServer({ expiresIn: 3600 });
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const client = newClient();
    const upstream = { id: 1, url: registry.url, username: 'u', password: 'one' };
    await client.head(upstream, manifest);
    await client.head(upstream, manifest);
    expect(tokens.issued).toHaveLength(1);
    await client.head({ ...upstream, password: 'two' }, manifest);
    expect(tokens.issued).toHaveLength(2);
    expect(tokens.server.seen[1].headers.authorization).toBe(basic('u', 'two'));
    client.forget(1);
    await client.head({ ...upstream, password: 'two' }, manifest);
    expect(tokens.issued).toHaveLength(3);
  });

  it('asks the remembered token endpoint (auth_url) before the first request', async () => {
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const discovered: string[] = [];
    const client = newClient();
    client.addObserver({ onRealmDiscovered: (_id, url) => discovered.push(url) });
    const upstream = { id: 3, url: registry.url, authUrl: `${tokens.server.url}/token?service=test-registry` };
    expect((await client.head(upstream, manifest)).status).toBe(200);
    expect(registry.seen).toHaveLength(1);
    expect(registry.seen[0].headers.authorization).toBe('Bearer tok-1');
    expect(discovered).toEqual([]);
  });

  it('recovers from a stale remembered token endpoint through the challenge', async () => {
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const discovered: string[] = [];
    const client = newClient();
    client.addObserver({ onRealmDiscovered: (_id, url) => discovered.push(url) });
    const res = await client.head({ id: 3, url: registry.url, authUrl: `${tokens.server.url}/old-token-path` }, manifest);
    expect(res.status).toBe(200);
    expect(discovered).toEqual([`${tokens.server.url}/token?service=test-registry`]);
  });
});

describe('UpstreamClient basic auth', () => {
  it('answers a Basic challenge with the upstream credentials, then sends them up front', async () => {
    const registry = await startServer((req, res) => {
      if (req.headers.authorization !== basic('bob', 'pw')) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="Registry Realm"', 'content-type': 'application/json' }).end('{"errors":[]}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"name":"app","tags":["1","2"]}');
    });
    const client = newClient();
    const upstream = { id: 1, url: registry.url, username: 'bob', password: 'pw' };
    for (let i = 0; i < 3; i++) {
      const res = await client.tagsList(upstream, 'team/app', { n: 2, last: '0' });
      expect(res.status).toBe(200);
      expect(await json(res.body)).toEqual({ name: 'app', tags: ['1', '2'] });
    }
    expect(registry.seen.map((r) => r.url)).toEqual(Array(4).fill('/v2/team/app/tags/list?n=2&last=0'));
    expect(registry.seen.filter((r) => !r.headers.authorization)).toHaveLength(1);

    const anonymous = await client.get({ id: 2, url: registry.url }, manifest);
    expect(anonymous.status).toBe(401);
    await anonymous.body.dump();
  });
});

describe('UpstreamClient redirects', () => {
  it('follows a blob redirect to another origin without the Authorization header, keeping Range', async () => {
    const payload = Buffer.alloc(300_000, 7);
    const cdn = await startServer((req, res) => {
      res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-range': 'bytes 0-299999/300000' }).end(payload);
    });
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
      (req, res) => {
        if (req.url?.includes('/blobs/sha256:aaa')) {
          // same-origin hop first, then off to the CDN
          res.writeHead(307, { location: req.url.replace('sha256:aaa', 'sha256:bbb') }).end();
          return;
        }
        res.writeHead(307, { location: `${cdn.url}/storage/blob?sig=1` }).end();
      },
    );
    const client = newClient();
    const res = await client.get({ id: 1, url: registry.url }, '/library/alpine/blobs/sha256:aaa', { range: 'bytes=0-' });
    expect(res.status).toBe(206);
    expect(res.url).toBe(`${cdn.url}/storage/blob?sig=1`);
    expect(Buffer.from(await arrayBuffer(res.body)).equals(payload)).toBe(true);

    const authorized = registry.seen.filter((r) => r.headers.authorization === 'Bearer tok-1').map((r) => r.url);
    expect(authorized).toEqual(['/v2/library/alpine/blobs/sha256:aaa', '/v2/library/alpine/blobs/sha256:bbb']);
    expect(cdn.seen).toHaveLength(1);
    expect(cdn.seen[0].headers.authorization).toBeUndefined();
    expect(cdn.seen[0].headers.range).toBe('bytes=0-');
  });

  it('gives up after 5 redirects with a protocol error', async () => {
    const loop = await startServer((req, res) => {
      const n = Number(/hop(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
      res.writeHead(302, { location: `/v2/a/blobs/hop${n + 1}` }).end();
    });
    const err = await newClient()
      .get({ id: 1, url: loop.url }, '/a/blobs/hop0')
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'protocol' });
    expect(loop.seen).toHaveLength(6);
  });

  it('refuses a redirect to an address outside the allowlist', async () => {
    const inside = await startServer((_req, res) => {
      res.writeHead(200).end('never');
    });
    const registry = await startServer((_req, res) => {
      res.writeHead(307, { location: `${inside.url}/internal` }).end();
    });
    const client = newClient({ allowPrivate: false, allowlist: [`127.0.0.1:${registry.port}`] });
    const err = await client.get({ id: 1, url: registry.url }, '/a/blobs/sha256:1').catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'refused-address' });
    expect(inside.connections).toBe(0);
  });
});

describe('UpstreamClient address policy at connect time', () => {
  it('refuses loopback upstreams by IP and by name (localhost) without connecting', async () => {
    const registry = await startServer((_req, res) => {
      res.writeHead(200).end('{}');
    });
    const client = newClient({ allowPrivate: false });
    for (const url of [registry.url, `http://localhost:${registry.port}`]) {
      const err = await client.get({ id: 1, url }, manifest).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UpstreamError);
      expect(err).toMatchObject({ kind: 'refused-address', upstreamId: 1 });
    }
    expect(registry.connections).toBe(0);
    await expect(client.assertUrlAllowed(`http://localhost:${registry.port}`)).rejects.toMatchObject({ kind: 'refused-address' });
  });

  it('connects to an allowlisted address', async () => {
    const registry = await startServer((_req, res) => {
      res.writeHead(200).end('{}');
    });
    const byIp = newClient({ allowPrivate: false, allowlist: ['127.0.0.1'] });
    expect((await byIp.head({ id: 1, url: registry.url }, manifest)).status).toBe(200);
    const byCidr = newClient({ allowPrivate: false, allowlist: ['127.0.0.0/8'] });
    expect((await byCidr.head({ id: 1, url: `http://localhost:${registry.port}` }, manifest)).status).toBe(200);
    await expect(byCidr.assertUrlAllowed(`http://localhost:${registry.port}`)).resolves.toBeUndefined();
  });

  it('refuses a token realm outside the allowlist', async () => {
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      () => true,
    );
    const client = newClient({ allowPrivate: false, allowlist: [`127.0.0.1:${registry.port}`] });
    const err = await client.head({ id: 1, url: registry.url }, manifest).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'refused-address' });
    expect(tokens.server.connections).toBe(0);
  });
});

describe('UpstreamClient failures and streaming', () => {
  it('reports a server that never answers as a timeout', async () => {
    const silent = await startServer(() => undefined);
    const client = newClient({ headersTimeoutMs: 200 });
    const started = Date.now();
    const err = await client.get({ id: 5, url: silent.url }, manifest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'timeout', upstreamId: 5 });
    expect((err as UpstreamError).isOutage).toBe(true);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('a body that stalls fails with an error classified as a timeout', async () => {
    const stalls = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write(Buffer.alloc(100));
    });
    const client = newClient({ bodyTimeoutMs: 200 });
    const res = await client.get({ id: 1, url: stalls.url }, '/a/blobs/sha256:1');
    const err = await arrayBuffer(res.body).catch((e: unknown) => e);
    expect(classifyUpstreamError(err, 1).kind).toBe('timeout');
  });

  it('an aborted request rejects with the abort reason, not an UpstreamError', async () => {
    const controller = new AbortController();
    // the client goes away once the upstream has the request (and will never answer it)
    const silent = await startServer(() => controller.abort(new Error('client went away')));
    const pending = newClient().get({ id: 1, url: silent.url }, manifest, { signal: controller.signal });
    const err = await pending.catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toBe('client went away');
  });

  it('close() waits a moment for bodies still arriving, then names and destroys one nobody reads (undici never times a paused body out)', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 7);
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(big.length), 'content-type': 'application/octet-stream' });
      res.end(big);
    });
    const client = newClient({ bodyTimeoutMs: 60_000 });
    const warnings: string[] = [];
    jest.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => void warnings.push(String(message)));
    const forgotten = await client.get({ id: 1, url: server.url }, '/a/blobs/sha256:forgotten');
    const read = await client.get({ id: 1, url: server.url }, '/a/blobs/sha256:read');
    forgotten.body.on('error', () => undefined);
    const reading = arrayBuffer(read.body);
    const started = Date.now();
    // The grace must outlast reading 4 MiB on a loaded machine (a CI run once needed more than 300 ms, and
    // close() then destroyed the body being read as well); the forgotten body makes close() wait all of it.
    await client.close(2000);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await reading).byteLength).toBe(big.length);
    expect(forgotten.body.destroyed).toBe(true);
    expect(warnings).toEqual([expect.stringMatching(/GET http:\/\/127\.0\.0\.1:\d+\/v2\/a\/blobs\/sha256:forgotten: \d+ bytes read, paused, unread/)]);
    clients.splice(clients.indexOf(client), 1);
    jest.restoreAllMocks();
  });

  it('reports a refused connection as unreachable', async () => {
    const gone = await startServer(() => undefined);
    const url = gone.url;
    await gone.close();
    servers.splice(servers.indexOf(gone), 1);
    const events: UpstreamRequestEvent[] = [];
    const client = newClient();
    client.addObserver({ onRequest: (e) => events.push(e) });
    const err = await client.get({ id: 9, url }, manifest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'unreachable', upstreamId: 9 });
    expect(events).toEqual([expect.objectContaining({ upstreamId: 9, method: 'GET', target: 'registry', errorKind: 'unreachable' })]);
  });

  it('returns the body as a live stream before the upstream has finished sending it', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const upstream = await startServer(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(128 * 1024) });
      res.write(Buffer.alloc(64 * 1024, 1));
      await released;
      res.end(Buffer.alloc(64 * 1024, 2));
    });
    const client = newClient();
    // if get() buffered the body it would never resolve: the second half waits for the first to be read
    let deadline: NodeJS.Timeout | undefined;
    const res = await Promise.race([
      client.get({ id: 1, url: upstream.url }, '/a/blobs/sha256:1'),
      new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error('get() waited for the whole body')), 3000); // a failure deadline, not a wait
      }),
    ]).finally(() => clearTimeout(deadline));
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(128 * 1024));
    const chunks: Buffer[] = [];
    let firstHalfSeen = 0;
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer);
      firstHalfSeen += (chunk as Buffer).length;
      if (firstHalfSeen === 64 * 1024) release(); // the second half is only sent now
    }
    const all = Buffer.concat(chunks);
    expect(all).toHaveLength(128 * 1024);
    expect(all[0]).toBe(1);
    expect(all[all.length - 1]).toBe(2);
  });

  it('reports every registry and token request to the observer', async () => {
    const tokens = await startTokenServer();
    const registry = await startBearerRegistry(
      () => `${tokens.server.url}/token`,
      (t) => tokens.issued.includes(t),
    );
    const events: UpstreamRequestEvent[] = [];
    const client = newClient();
    client.addObserver({ onRequest: (e) => events.push(e) });
    await client.head({ id: 4, url: registry.url }, manifest);
    await client.head({ id: 4, url: registry.url }, '/library/alpine/manifests/edge');
    expect(events.map(({ target, method, status }) => ({ target, method, status }))).toEqual([
      { target: 'token', method: 'GET', status: 200 },
      { target: 'registry', method: 'HEAD', status: 200 },
      { target: 'registry', method: 'HEAD', status: 200 },
    ]);
    expect(events.every((e) => e.durationMs >= 0 && e.upstreamId === 4)).toBe(true);
  });
});

describe('UpstreamClient error messages (they may reach a pull client)', () => {
  /** What a message must never carry: where the upstream or its token server is, or what it said. */
  function expectSafe(err: unknown, ...secrets: string[]): UpstreamError {
    expect(err).toBeInstanceOf(UpstreamError);
    const { message } = err as UpstreamError;
    for (const secret of ['127.0.0.1', 'http://', ...secrets]) expect(message).not.toContain(secret);
    return err as UpstreamError;
  }

  it('a token server refusal says its status, not its URL nor its body (those are in detail, for the logs)', async () => {
    const tokens = await startServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"user deploy-bot has no access to internal-project-x"}');
    });
    const registry = await startBearerRegistry(
      () => `${tokens.url}/token`,
      () => false,
    );
    const err = await newClient()
      .head({ id: 1, url: registry.url, username: 'deploy-bot', password: 'hunter2' }, manifest)
      .catch((e: unknown) => e);
    const error = expectSafe(err, '/token', 'internal-project-x', 'deploy-bot', 'hunter2');
    expect([error.kind, error.status, error.message]).toEqual(['status', 401, 'token server answered 401']);
    expect(error.detail).toContain(`${tokens.url}/token`);
    expect(error.detail).toContain('internal-project-x');
  });

  it('a token server that sends no token, a redirect loop and a refused connection name no URL', async () => {
    const tokens = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>sso.internal.example login</html>');
    });
    const bearer = await startBearerRegistry(
      () => `${tokens.url}/token`,
      () => false,
    );
    const loop = await startServer((req, res) => {
      res.writeHead(302, { location: `${req.url}x` }).end();
    });
    const gone = await startServer(() => undefined);
    await gone.close();
    servers.splice(servers.indexOf(gone), 1);
    const client = newClient();

    const noToken = expectSafe(await client.head({ id: 1, url: bearer.url }, manifest).catch((e: unknown) => e), 'sso.internal');
    expect(noToken.message).toBe('token server sent no JSON token');
    const looping = expectSafe(await client.get({ id: 2, url: loop.url }, '/a/blobs/sha256:1').catch((e: unknown) => e), '/v2/a');
    expect(looping.message).toBe('more than 5 redirects');
    const refused = expectSafe(await client.get({ id: 3, url: gone.url }, manifest).catch((e: unknown) => e), String(gone.port));
    expect(refused.message).toBe('upstream unreachable (ECONNREFUSED)');
    expect(refused.detail).toContain(`${gone.url}/v2${manifest}`);
  });

  it('a refused address is "not a public address", never the address a name resolved to', async () => {
    const registry = await startServer((_req, res) => {
      res.writeHead(200).end('{}');
    });
    const client = newClient({ allowPrivate: false });
    const connecting = expectSafe(await client.get({ id: 1, url: `http://localhost:${registry.port}` }, manifest).catch((e: unknown) => e), 'localhost');
    const checking = expectSafe(await client.assertUrlAllowed(`http://localhost:${registry.port}`).catch((e: unknown) => e), 'localhost');
    for (const error of [connecting, checking]) {
      expect(error.message).toBe(NOT_PUBLIC);
      expect(error.detail).toMatch(/localhost .*127\.0\.0\.1|127\.0\.0\.1/);
    }
  });

  it('a transport error keeps its code, not its text (which names hosts and addresses)', () => {
    const raw = Object.assign(new Error('connect ECONNREFUSED 10.0.0.8:443'), { code: 'ECONNREFUSED' });
    const error = classifyUpstreamError(raw, 1, 'GET https://registry.internal/v2/');
    expect(error.message).toBe('upstream unreachable (ECONNREFUSED)');
    expect(error.detail).toBe('GET https://registry.internal/v2/: connect ECONNREFUSED 10.0.0.8:443');
    const timeout = classifyUpstreamError(Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' }), 1);
    expect([timeout.kind, timeout.message]).toEqual(['timeout', 'upstream timed out (UND_ERR_HEADERS_TIMEOUT)']);
  });
});
