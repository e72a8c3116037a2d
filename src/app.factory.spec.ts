import { jest } from '@jest/globals';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { closeConnectionsAsTheyIdle, rememberedPulls } from './app.factory.js';
import type { RequestRecorder } from './observability/request-recorder.js';
import type { PullResponse } from './proxy/pull-response.js';
import type { RegistryPullController, RememberedAnswer } from './proxy/registry-pull.controller.js';

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

const MANIFEST = Buffer.from('{"schemaVersion":2}');
const ANSWER: RememberedAnswer = {
  route: '/v2/virtual_registries/:spelling/*',
  response: {
    status: 200,
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(MANIFEST.length) },
    body: MANIFEST,
  },
};

describe('rememberedPulls (answers from memory before Fastify)', () => {
  let server: Server;
  let origin: string;
  let open = true;
  const rememberedAnswer = jest.fn<RegistryPullController['rememberedAnswer']>();
  const record = jest.fn<RequestRecorder['record']>();
  const warn = jest.fn();

  beforeAll(async () => {
    const answer = rememberedPulls(
      { rememberedAnswer } as unknown as RegistryPullController,
      { record } as unknown as RequestRecorder,
      { warn } as unknown as FastifyBaseLogger,
      () => open,
    );
    // What the server does with a request the early answer leaves: Fastify's part, here a 404 that says so.
    server = createServer((req, res) => {
      const fastify = () => res.writeHead(404, { 'x-left-to': 'fastify' }).end();
      if (!answer(req, res, fastify)) fastify();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => server.close());

  beforeEach(() => {
    open = true;
    rememberedAnswer.mockReset();
    record.mockReset();
    warn.mockReset();
  });

  it('writes the remembered answer with a request id and records it under its route', async () => {
    rememberedAnswer.mockReturnValue(ANSWER);
    const res = await fetch(`${origin}/v2/virtual_registries/containers/1/a/manifests/1`, { headers: { 'x-request-id': 'req-7' } });
    expect([res.status, res.headers.get('x-request-id'), res.headers.get('content-type')]).toEqual([
      200,
      'req-7',
      'application/vnd.oci.image.manifest.v1+json',
    ]);
    expect(Buffer.from(await res.arrayBuffer()).equals(MANIFEST)).toBe(true);
    expect(rememberedAnswer).toHaveBeenCalledWith(
      'GET',
      '/v2/virtual_registries/containers/1/a/manifests/1',
      expect.objectContaining({ 'x-request-id': 'req-7' }),
    );
    expect(record).toHaveBeenCalledWith(
      { id: 'req-7', method: 'GET', url: '/v2/virtual_registries/containers/1/a/manifests/1' },
      ANSWER.route,
      200,
      expect.any(Number),
    );
  });

  it('gives a request without a usable id a new one', async () => {
    rememberedAnswer.mockReturnValue(ANSWER);
    const res = await fetch(`${origin}/x`, { headers: { 'x-request-id': 'not a valid id!' } });
    await res.arrayBuffer();
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('leaves a request it has no answer for to Fastify', async () => {
    rememberedAnswer.mockReturnValue(undefined);
    const res = await fetch(`${origin}/x`);
    expect([res.status, res.headers.get('x-left-to')]).toEqual([404, 'fastify']);
    expect(record).not.toHaveBeenCalled();
  });

  it('leaves everything to Fastify once the server is closing, without looking', async () => {
    open = false;
    rememberedAnswer.mockReturnValue(ANSWER);
    const res = await fetch(`${origin}/x`);
    expect(res.headers.get('x-left-to')).toBe('fastify');
    expect(rememberedAnswer).not.toHaveBeenCalled();
  });

  it("writes a blob's answer once it is ready, its body streamed, and records it when the response ends", async () => {
    const bytes = Buffer.alloc(3 * 1024 * 1024, 7);
    const response: PullResponse = {
      status: 200,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length), 'docker-content-digest': 'sha256:x' },
      body: Readable.from([bytes.subarray(0, 1024), bytes.subarray(1024)]),
    };
    rememberedAnswer.mockReturnValue({ route: ANSWER.route, pending: new Promise((resolve) => setTimeout(() => resolve(response), 20)) });
    const res = await fetch(`${origin}/v2/virtual_registries/containers/1/a/blobs/sha256:x`, { headers: { 'x-request-id': 'req-8' } });
    expect([res.status, res.headers.get('x-request-id'), res.headers.get('docker-content-digest')]).toEqual([200, 'req-8', 'sha256:x']);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    await until(() => record.mock.calls.length === 1);
    expect(record).toHaveBeenCalledWith(expect.objectContaining({ id: 'req-8', method: 'GET' }), ANSWER.route, 200, expect.any(Number));
  });

  it('leaves a blob to Fastify when its answer turns out missing or failing (once, nothing recorded)', async () => {
    rememberedAnswer.mockReturnValueOnce({ route: ANSWER.route, pending: Promise.resolve(undefined) });
    const vanished = await fetch(`${origin}/x`);
    expect([vanished.status, vanished.headers.get('x-left-to')]).toEqual([404, 'fastify']);
    rememberedAnswer.mockReturnValueOnce({ route: ANSWER.route, pending: Promise.reject(new Error('the store failed')) });
    const failed = await fetch(`${origin}/y`);
    expect([failed.status, failed.headers.get('x-left-to')]).toEqual([404, 'fastify']);
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ method: 'GET', url: '/y' }), expect.stringContaining('left to the full path'));
    expect(record).not.toHaveBeenCalled();
  });

  it("cuts the connection when a blob's body fails after its headers went out, and says so in the log", async () => {
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000));
    setTimeout(() => body.destroy(new Error('the disk went away')), 20);
    rememberedAnswer.mockReturnValue({ route: ANSWER.route, pending: Promise.resolve({ status: 200, headers: { 'content-length': '5000' }, body }) });
    const res = await fetch(`${origin}/z`, { headers: { 'x-request-id': 'req-9' } });
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
    await until(() => warn.mock.calls.length === 1 && record.mock.calls.length === 1);
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ reqId: 'req-9' }), 'serving a blob failed');
  });

  it('leaves the request to Fastify when answering fails, and says so in the log', async () => {
    rememberedAnswer.mockImplementation(() => {
      throw new Error('boom');
    });
    const res = await fetch(`${origin}/x`);
    expect(res.headers.get('x-left-to')).toBe('fastify');
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ method: 'GET', url: '/x' }), expect.stringContaining('left to the full path'));
  });
});

describe('closeConnectionsAsTheyIdle (a closing server lets in-flight requests end, then lets go)', () => {
  it('closes a keep-alive connection once its request in flight has ended, long before the keep-alive timeout', async () => {
    let answer!: () => void;
    const server = createServer((_req, res) => {
      answer = () => res.end('done');
    });
    server.keepAliveTimeout = 72_000;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const inFlight = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`).then((res) => res.text());
    await until(() => answer !== undefined);

    const closed = new Promise<number>((resolve) => server.close(() => resolve(Date.now())));
    closeConnectionsAsTheyIdle(server);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const answered = Date.now();
    answer();
    expect(await inFlight).toBe('done');
    expect((await closed) - answered).toBeLessThan(5_000);
  });
});
