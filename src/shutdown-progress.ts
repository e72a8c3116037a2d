import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { INestApplication, INestApplicationContext } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';

/** The Nest lifecycle hooks an application's close() awaits, in the order it calls them. */
const SHUTDOWN_HOOKS = ['onModuleDestroy', 'beforeApplicationShutdown', 'onApplicationShutdown'] as const;

/**
 * What a provider with a shutdown hook can add to "still waiting for" while its hook runs: what it is
 * waiting on (fills in progress, connections in use), or undefined when there is nothing to say. Found by
 * name, as Nest finds its hooks: modules below the application's root implement the method without
 * importing this file.
 */
export interface DescribesShutdown {
  describeShutdown(): string | undefined;
}

interface RunningStep {
  readonly name: string;
  readonly since: number;
  readonly detail?: () => string | undefined;
}

/**
 * What an application's close() is waiting for, by name: each shutdown hook of each provider, controller
 * and module while it runs, and the HTTP server's close (in-flight requests finish first). A close that
 * does not end can then say what it waits on (SHUTDOWN_TIMEOUT_MS's message, the test harness).
 */
export class ShutdownProgress {
  private readonly running = new Set<RunningStep>();

  /** Runs `step` as `name`, listed by pending() until it settles. */
  track<T>(name: string, step: () => T, detail?: () => string | undefined): T {
    const entry: RunningStep = { name, since: Date.now(), detail };
    this.running.add(entry);
    let result: T;
    try {
      result = step();
    } catch (err) {
      this.running.delete(entry);
      throw err;
    }
    if (result instanceof Promise) {
      void result.then(
        () => this.running.delete(entry),
        () => this.running.delete(entry),
      );
    } else {
      this.running.delete(entry);
    }
    return result;
  }

  /** pending() as one line, for a log: what a close that has not ended waits for. */
  describe(now = Date.now()): string {
    return this.pending(now).join('; ') || 'nothing named (between two steps)';
  }

  /** The steps still running, oldest first: `name for 12.3 s (detail)`. */
  pending(now = Date.now()): string[] {
    return [...this.running].map((step) => {
      let detail: string | undefined;
      try {
        detail = step.detail?.();
      } catch (err) {
        detail = `could not describe: ${(err as Error).message}`;
      }
      return `${step.name} for ${((now - step.since) / 1000).toFixed(1)} s${detail ? ` (${detail})` : ''}`;
    });
  }
}

const tracked = new WeakMap<object, ShutdownProgress>();

/**
 * Names what `app.close()` waits on: wraps every shutdown hook of the application's providers,
 * controllers and modules, and its HTTP server's close (an HTTP application), in a ShutdownProgress.
 * Call once the application is built; later calls return the same progress.
 */
export function trackShutdown(app: INestApplicationContext): ShutdownProgress {
  const known = tracked.get(app);
  if (known) return known;
  const progress = new ShutdownProgress();
  tracked.set(app, progress);
  const seen = new Set<object>();
  for (const module of app.get(ModulesContainer).values()) {
    const wrappers = [...module.providers.values(), ...module.controllers.values(), ...module.injectables.values()];
    const instances: unknown[] = [module.instance, ...wrappers.filter((w) => w.isDependencyTreeStatic() && !w.isTransient).map((w) => w.instance)];
    for (const instance of instances) {
      if (!instance || typeof instance !== 'object' || seen.has(instance)) continue;
      seen.add(instance);
      wrapHooks(instance as Record<string, unknown>, progress);
    }
  }
  if (isHttpApplication(app)) {
    const adapter = app.getHttpAdapter();
    const inFlight = new RequestsInFlight(adapter.getHttpServer() as Server);
    const close = adapter.close.bind(adapter) as () => Promise<unknown>;
    adapter.close = () => progress.track('the HTTP server (requests in flight finish first)', close, () => inFlight.describe());
  }
  return progress;
}

/** The progress of an application passed to trackShutdown, if it was. */
export function shutdownProgressOf(app: INestApplicationContext): ShutdownProgress | undefined {
  return tracked.get(app);
}

function isHttpApplication(app: INestApplicationContext): app is INestApplication {
  return typeof (app as Partial<INestApplication>).getHttpAdapter === 'function';
}

function wrapHooks(instance: Record<string, unknown>, progress: ShutdownProgress): void {
  const describes = typeof instance.describeShutdown === 'function' ? () => (instance as unknown as DescribesShutdown).describeShutdown() : undefined;
  for (const hook of SHUTDOWN_HOOKS) {
    const original = instance[hook];
    if (typeof original !== 'function') continue;
    const name = `${instance.constructor.name}.${hook}`;
    instance[hook] = (...args: unknown[]) => progress.track(name, () => (original as (...a: unknown[]) => unknown).apply(instance, args), describes);
  }
}

/** The most requests in flight a description names one by one. */
const NAMED_REQUESTS = 5;

/**
 * The requests a server is answering and its open connections, for the HTTP server's step of a shutdown:
 * which request holds its close, for how long, and whether its client still reads (bytes the socket could
 * not send yet); or, with no request in flight, how many connections are still open.
 */
export class RequestsInFlight {
  private readonly answering = new Map<ServerResponse, number>();
  private readonly connections = new Set<Socket>();

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.connections.add(socket);
      socket.once('close', () => this.connections.delete(socket));
    });
    server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      this.answering.set(res, Date.now());
      res.once('close', () => this.answering.delete(res));
    });
  }

  get size(): number {
    return this.answering.size;
  }

  /**
   * `2 request(s) in flight: GET /v2/a/blobs/sha256:… for 35.1 s (headers sent, … bytes written to the
   * connection, … waiting for the client to read), …`; `no request in flight, 1 connection(s) open`; or
   * undefined when nothing is open.
   */
  describe(now = Date.now()): string | undefined {
    if (this.answering.size === 0) return this.connections.size ? `no request in flight, ${this.connections.size} connection(s) open` : undefined;
    const oldest = [...this.answering].sort(([, a], [, b]) => a - b).slice(0, NAMED_REQUESTS);
    const named = oldest.map(([res, since]) => `${requestLine(res.req)} for ${((now - since) / 1000).toFixed(1)} s (${responseState(res)})`);
    const more = this.answering.size > named.length ? `, and ${this.answering.size - named.length} more` : '';
    return `${this.answering.size} request(s) in flight: ${named.join(', ')}${more}`;
  }
}

/** Method and path, without the query (it may carry a credential). */
function requestLine(req: IncomingMessage | undefined): string {
  return `${req?.method ?? '?'} ${(req?.url ?? '?').split('?')[0]}`;
}

function responseState(res: ServerResponse): string {
  if (!res.headersSent) return 'no answer yet';
  const unsent = res.socket?.writableLength ?? 0;
  const sent = `headers sent, ${res.socket?.bytesWritten ?? 0} bytes written to the connection`;
  return unsent > 0 ? `${sent}, ${unsent} waiting for the client to read` : sent;
}
