import type { Server } from 'node:http';
import type { INestApplication, INestApplicationContext } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { ServerConnections } from './http-connections.js';

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
    const connections = ServerConnections.of(adapter.getHttpServer() as Server);
    const close = adapter.close.bind(adapter) as () => Promise<unknown>;
    adapter.close = () => progress.track('the HTTP server (requests in flight finish first)', close, () => connections.describe());
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
