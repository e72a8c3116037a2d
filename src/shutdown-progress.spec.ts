import { get } from 'node:http';
import { BeforeApplicationShutdown, Controller, Get, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { ShutdownProgress, trackShutdown, type DescribesShutdown } from './shutdown-progress.js';

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
