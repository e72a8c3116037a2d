import type { UpstreamRegistry } from '../../test/support/upstream-registry.js';
import type { PullSystem } from './pull-system.js';

/** The upstream registry itself, pulled directly: the baseline of every ratio. */
export class DirectUpstreamSystem implements PullSystem {
  readonly id = 'direct' as const;

  constructor(private readonly upstream: UpstreamRegistry) {}

  get baseUrl(): string {
    return this.upstream.url;
  }

  repositoryPath(name: string): string {
    return name;
  }

  skopeoCredentials(): string[] {
    return ['--src-no-creds'];
  }

  async authorization(): Promise<string | undefined> {
    return undefined;
  }

  async freshCache(): Promise<void> {}

  async settle(): Promise<void> {}

  /** The upstream outlives the systems in front of it: run.ts closes it last. */
  processGroups(): number[] {
    const pid = this.upstream.pid;
    return pid === undefined ? [] : [pid];
  }

  async close(): Promise<void> {}
}
