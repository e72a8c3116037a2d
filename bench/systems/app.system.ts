/**
 * The app as a pull system. A fresh cache is a new group, virtual registry and upstream (same upstream
 * URL) created through the admin API, once the previous registry's cache is deleted: the new upstream has
 * no cache entries, and the storage holds nothing from before. Rounds also pull images nobody has pulled
 * before, so no bytes are stored under any upstream (no dedupe shortcut).
 */
import type { TestApp } from '../../test/support/test-app.js';
import { adminApi, createVirtualRegistry, pullToken, type VirtualRegistry } from '../../test/support/virtual-registry.js';
import type { AppProcess } from './app-process.js';
import type { PullSystem } from './pull-system.js';

export class AppSystem implements PullSystem {
  readonly id = 'app' as const;
  private registry?: VirtualRegistry;
  private readonly tokens = new Map<string, Promise<string>>();

  constructor(
    readonly app: AppProcess,
    private readonly upstreamUrl: string,
    /** Set for a view through another replica: that system's virtual registry (and fresh caches) are used. */
    private readonly primary?: AppSystem,
  ) {}

  /** This system's current virtual registry, pulled through `replica` (another API process of the same deployment). */
  throughReplica(replica: AppProcess): AppSystem {
    return new AppSystem(replica, this.upstreamUrl, this.primary ?? this);
  }

  get baseUrl(): string {
    return this.app.url;
  }

  /** The upstream the current virtual registry pulls through. */
  get upstreamId(): number {
    return this.current().upstreamIds[0];
  }

  repositoryPath(name: string): string {
    return `virtual_registries/containers/${this.current().registryId}/${name}`;
  }

  skopeoCredentials(): string[] {
    const { username, token } = this.current().pullUser;
    return ['--src-creds', `${username}:${token}`];
  }

  async authorization(name: string): Promise<string> {
    const registry = this.current();
    const key = `${registry.registryId} ${name}`;
    let token = this.tokens.get(key);
    if (!token) {
      token = pullToken(this.handle(), registry, name);
      this.tokens.set(key, token);
    }
    return `Bearer ${await token}`;
  }

  /**
   * A new virtual registry with a new upstream (nothing cached under it), after the previous registry's
   * cache is deleted: as the peers' fresh caches delete their cache directory, so every system starts a
   * cold pull with an empty cache and the same memory freed. Kept, the previous rounds' objects held
   * their page cache, and only the app's cold fills had to grow it, which costs a virtual machine far
   * more than reusing freed pages (0.37 s against 0.04 s of system time per 200 MiB on the benchmark's
   * machine kind).
   */
  async freshCache(): Promise<void> {
    if (this.primary) return this.primary.freshCache();
    if (this.registry) await this.deleteCache(this.registry);
    this.registry = await createVirtualRegistry(this.handle(), [{ url: this.upstreamUrl }]);
  }

  /**
   * Purges `registry`'s cache through the admin API and waits until the lifecycle jobs (wherever they run:
   * the app itself, or a worker process) have deleted the objects of its entries from the storage.
   */
  private async deleteCache(registry: VirtualRegistry, timeoutMs = 120_000): Promise<void> {
    const digests = new Set<string>();
    for (const upstreamId of registry.upstreamIds) for (const entry of await this.entriesOf(upstreamId)) digests.add(entry.digest);
    if (digests.size === 0) return;
    await adminApi(this.handle(), 'DELETE', `/api/v4/virtual_registries/container/registries/${registry.registryId}/cache`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = await this.app.storedObjects([...digests]);
      if (left === 0) return;
      if (Date.now() > deadline)
        throw new Error(`app: ${left} of the ${digests.size} objects the previous registry cached are still stored after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Waits until every digest has a live cache entry under the current upstream (admin API listing). */
  async settle(digests: readonly string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const cached = await this.cachedDigests();
      const missing = digests.filter((d) => !cached.has(d));
      if (missing.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`app: ${missing.length} of ${digests.length} digests not cached after ${timeoutMs} ms (${missing.slice(0, 3).join(', ')})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  processGroups(): number[] {
    return [this.app.pid];
  }

  async close(): Promise<void> {
    await this.app.stop();
  }

  private async cachedDigests(): Promise<Set<string>> {
    return new Set((await this.entriesOf(this.upstreamId)).map((entry) => entry.digest));
  }

  /** The live cache entries of an upstream (admin API listing, every page). */
  private async entriesOf(upstreamId: number): Promise<{ digest: string }[]> {
    const all: { digest: string }[] = [];
    for (let page = 1; ; page++) {
      const entries = await adminApi<{ digest: string }[]>(
        this.handle(),
        'GET',
        `/api/v4/virtual_registries/container/upstreams/${upstreamId}/cache_entries?per_page=100&page=${page}`,
      );
      all.push(...entries);
      if (entries.length < 100) return all;
    }
  }

  private current(): VirtualRegistry {
    if (this.primary) return this.primary.current();
    if (!this.registry) throw new Error('app: freshCache() has not created a virtual registry yet');
    return this.registry;
  }

  /** virtual-registry.ts reads only `url` of the TestApp it is given; here the app is a child process. */
  private handle(): TestApp {
    return { url: this.app.url } as TestApp;
  }
}
