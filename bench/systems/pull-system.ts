/**
 * One system the benchmark pulls from: the upstream itself (the baseline every ratio is taken against),
 * the app, and the two reference peers in front of the same upstream.
 */
export type SystemId = 'direct' | 'app' | 'distribution' | 'nginx' | 'app-x-accel' | 'app-presigned';

export const SYSTEM_LABELS: Readonly<Record<SystemId, string>> = {
  direct: 'direct (upstream)',
  app: 'app',
  distribution: 'Distribution proxy',
  nginx: 'nginx proxy_cache',
  'app-x-accel': 'app + nginx x-accel',
  'app-presigned': 'app, S3 presigned',
};

export interface PullSystem {
  readonly id: SystemId;
  /** `http://127.0.0.1:<port>` of what clients talk to (changes when a fresh cache means a new process). */
  readonly baseUrl: string;
  /** What this system calls repository `name` in its API paths and image references. */
  repositoryPath(name: string): string;
  /** skopeo's credential flags for this system. */
  skopeoCredentials(): string[];
  /** `Authorization` header value for pulling `name` (a registry JWT for the app; none for the others). */
  authorization(name: string): Promise<string | undefined>;
  /** Forgets everything cached, so the next pull is cold (a no-op for the upstream itself). */
  freshCache(): Promise<void>;
  /**
   * Waits until the given digests are cached and served without the upstream (the app commits entries
   * right after the bytes went out; the peers cache synchronously). No-op for the others.
   */
  settle(digests: readonly string[], timeoutMs: number): Promise<void>;
  close(): Promise<void>;
  /**
   * The process groups doing this system's work (its processes are started as group leaders), for CPU
   * time per GiB: nginx's workers, Distribution's registry, the app, the upstream registry for `direct`.
   */
  processGroups(): number[];
}

/** `127.0.0.1:<port>/<path>`: the image reference prefix skopeo uses. */
export function referenceOf(system: PullSystem, name: string, reference: string): string {
  const host = new URL(system.baseUrl).host;
  const separator = reference.startsWith('sha256:') ? '@' : ':';
  return `${host}/${system.repositoryPath(name)}${separator}${reference}`;
}

/** Full URL of a registry API path (`manifests/latest`, `blobs/sha256:...`) of repository `name`. */
export function registryUrl(system: PullSystem, name: string, path: string): string {
  return `${system.baseUrl}/v2/${system.repositoryPath(name)}/${path}`;
}
