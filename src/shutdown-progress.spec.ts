import { createServer, get, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { BeforeApplicationShutdown, Controller, Get, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { RequestsInFlight, ShutdownProgress, trackShutdown, type DescribesShutdown } from './shutdown-progress.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

const drained = deferred();
const requestHeld = deferred();
let requestArrived = false;

@Injectable()
class SlowDrain implements BeforeApplicationShutdown, DescribesShutdown {
  waiting = 2;

  async beforeApplicationShutdown(): Promise<void> {
    await drained.promise;
    this.waiting = 0;
  }

  describeShutdown(): string | undefined {
    return this.waiting ? `${this.waiting} fills running` : undefined;
  }
}

@Controller('held')
class HeldController {
  @Get()
  async held(): Promise<string> {
    requestArrived = true;
    await requestHeld.promise;
    return 'done';
  }
}

@Module({ providers: [SlowDrain], controllers: [HeldController] })
class ShutdownTestModule implements OnApplicationShutdown {
  closedPools = false;

  onApplicationShutdown(): void {
    this.closedPools = true;
  }
}

describe('ShutdownProgress', () => {
  it('lists a running step by name, with how long it has run, until it settles', async () => {
    const progress = new ShutdownProgress();
    const step = deferred();
    const tracked = progress.track(
      'pools',
      () => step.promise,
      () => '3 connections in use',
    );
    expect(progress.pending(Date.now() + 1500)).toEqual([expect.stringMatching(/^pools for 1\.[45] s \(3 connections in use\)$/)]);
    expect(progress.describe(Date.now() + 1500)).toMatch(/^pools for 1\.[45] s \(3 connections in use\)$/);
    step.resolve();
    await tracked;
    expect(progress.pending()).toEqual([]);
    expect(progress.describe()).toBe('nothing named (between two steps)');
  });

  it('forgets a step that throws or rejects, and passes the outcome on', async () => {
    const progress = new ShutdownProgress();
    expect(() =>
      progress.track('sync', () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    await expect(progress.track('async', () => Promise.reject(new Error('later')))).rejects.toThrow('later');
    expect(progress.track('value', () => 42)).toBe(42);
    expect(progress.pending()).toEqual([]);
  });

  it('names a detail that cannot be described instead of failing', () => {
    const progress = new ShutdownProgress();
    void progress.track(
      'queue',
      () => new Promise(() => undefined),
      () => {
        throw new Error('gone');
      },
    );
    expect(progress.pending()).toEqual([expect.stringMatching(/^queue for 0\.\d s \(could not describe: gone\)$/)]);
  });
});

describe('trackShutdown (what an application close waits for)', () => {
  let app: NestFastifyApplication;

  beforeAll(async () => {
    app = await NestFactory.create<NestFastifyApplication>(ShutdownTestModule, new FastifyAdapter({ forceCloseConnections: 'idle' }), { logger: false });
    await app.listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    drained.resolve();
    requestHeld.resolve();
    await app.close();
  });

  it("names each shutdown hook still running with the provider's own account, then the HTTP server's close, until close() ends", async () => {
    const progress = trackShutdown(app);
    expect(trackShutdown(app)).toBe(progress);
    const address = app.getHttpServer().address() as { port: number };
    // A connection of its own, closed after the answer (a kept-alive one would hold the server's close open).
    const inFlight = new Promise<string>((resolve, reject) => {
      get({ host: '127.0.0.1', port: address.port, path: '/held', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    await until(() => requestArrived);

    const closing = app.close();
    await until(() => progress.pending().length > 0);
    expect(progress.pending()).toEqual([expect.stringMatching(/^SlowDrain\.beforeApplicationShutdown for \d+\.\d s \(2 fills running\)$/)]);

    drained.resolve();
    await until(() => progress.pending().some((step) => step.startsWith('the HTTP server')));
    expect(progress.pending()).toEqual([
      expect.stringMatching(
        /^the HTTP server \(requests in flight finish first\) for \d+\.\d s \(1 request\(s\) in flight: GET \/held for \d+\.\d s \(no answer yet\)\)$/,
      ),
    ]);
    expect(app.get(ShutdownTestModule).closedPools).toBe(false);

    requestHeld.resolve();
    expect(await inFlight).toBe('done');
    await closing;
    expect(progress.pending()).toEqual([]);
    expect(app.get(ShutdownTestModule).closedPools).toBe(true);
  });
});

describe('RequestsInFlight', () => {
  let server: Server;
  let inFlight: RequestsInFlight;
  const sockets: Socket[] = [];
  const release = deferred();

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url?.startsWith('/big')) {
        // 32 MiB to a client that reads nothing: the socket keeps what the kernel would not take
        res.writeHead(200, { 'content-length': String(32 * 1024 * 1024) });
        res.write(Buffer.alloc(32 * 1024 * 1024));
      }
      void release.promise.then(() => res.end());
    });
    inFlight = new RequestsInFlight(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    release.resolve();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A raw connection that sends one request and never reads the answer. */
  const request = (path: string) => {
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.pause();
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    sockets.push(socket);
  };

  it('says nothing when no request is in flight', () => {
    expect(inFlight.describe()).toBeUndefined();
  });

  it('names the oldest requests without their query, how long each has run and whether its client reads, then counts the rest', async () => {
    request('/big/blobs/sha256:abc?token=secret');
    await until(() => inFlight.size === 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 5; i++) request(`/v2/held/${i}`);
    await until(() => inFlight.size === 6);
    const line = inFlight.describe(Date.now() + 2000)!;
    expect(line).toMatch(
      /^6 request\(s\) in flight: GET \/big\/blobs\/sha256:abc for 2\.\d s \(headers sent, \d+ bytes written to the connection, \d+ waiting for the client to read\), /,
    );
    expect(line).not.toContain('secret');
    expect(line).toMatch(/GET \/v2\/held\/\d for 2\.\d s \(no answer yet\), and 1 more$/);
    expect(line.match(/GET /g)).toHaveLength(5);
  });

  it('with no request in flight, counts the connections still open; then nothing once they close', async () => {
    for (const socket of sockets) socket.destroy();
    await until(() => inFlight.size === 0);
    const idle = connect((server.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(idle);
    await until(() => inFlight.describe() === 'no request in flight, 1 connection(s) open');
    idle.destroy();
    await until(() => inFlight.describe() === undefined);
  });
});
