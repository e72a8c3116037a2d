import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { usableCpus } from './cpu-limit.js';

/**
 * The whole configuration contract, parsed and validated once at boot.
 * Every variable is documented in README.md and .env.example.
 * A bad value raises ConfigValidationError naming the variable (one line, no stack).
 */
export class ConfigValidationError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = 'ConfigValidationError';
  }
}

export type StorageDriverName = 'filesystem' | 's3';
export type QueueDriverName = 'bullmq' | 'inline';

/**
 * How the native addon sends stored bytes to a plain-TCP HTTP client (BLOB_SENDFILE):
 * - `auto`: sendfile(2) to a client on another host; to one on this host's loopback, the addon reads and
 *   writes 1 MiB at a time itself (see loopbackCopies);
 * - `on`: sendfile(2) to every client;
 * - `off`: no addon: the app reads the file and writes the socket (1 MiB reads).
 */
export type SendfileMode = 'auto' | 'on' | 'off';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Which peers may tell the client address (X-Forwarded-For, -Proto, -Host; TRUST_PROXY): nobody (false),
 * every peer (true), the nearest `n` hops, or peers in these addresses, CIDRs and named ranges.
 */
export type TrustProxy = boolean | number | string[];

export interface Environment {
  app: {
    port: number;
    host: string;
    publicUrl: string | undefined;
    /** Where the other replicas reach this one (PEER_URL); derived from the listener when unset. */
    peerUrl: string | undefined;
    dataDir: string;
    logLevel: LogLevel;
    shutdownTimeoutMs: number;
    role: 'api' | 'worker';
    /**
     * Processes serving HTTP in the API process (HTTP_WORKERS; `auto`: one per usable CPU, the container's CPU limit counted): more than one makes
     * it a node:cluster primary whose workers share the port. 1 (the default) serves in the process itself.
     */
    httpWorkers: number;
    trustProxy: TrustProxy;
    /**
     * The registry served at the root `/v2/<name>` (for clients that cannot put a path in a mirror's
     * address): by the request's Host name (MIRROR_HOST_REGISTRIES), else MIRROR_DEFAULT_REGISTRY.
     */
    rootRegistries: RootRegistries;
  };
  database: {
    url: string | undefined;
    migrationsRun: boolean;
    poolSize: number;
    /** How long an idle pool connection stays open; 0 keeps it until the process ends. */
    poolIdleTimeoutMs: number;
  };
  queue: {
    driver: QueueDriverName;
    redisUrl: string | undefined;
    concurrency: number;
    /** Whether this process runs background jobs (RUN_JOBS; auto = inline queue or APP_ROLE=worker). */
    runJobs: boolean;
    /** Redis key prefix of the BullMQ queues (QUEUE_PREFIX): deployments or test runs sharing a Redis use different ones. */
    prefix: string;
  };
  storage: {
    driver: StorageDriverName;
    s3: {
      endpoint: string | undefined;
      bucket: string | undefined;
      region: string;
      accessKeyId: string | undefined;
      secretAccessKey: string | undefined;
      forcePathStyle: boolean;
      /** The endpoint clients reach the store at, for presigned URLs (S3_PUBLIC_ENDPOINT; default S3_ENDPOINT). */
      publicEndpoint: string | undefined;
    };
    /**
     * Cache hits whose bytes the app does not move itself (issue 13). `x-accel` (BLOB_OFFLOAD, filesystem
     * storage): the app answers with `X-Accel-Redirect` and the nginx in front sends the file.
     */
    blobOffload: 'off' | 'x-accel';
    /**
     * How the filesystem store sends stored blobs to plain-TCP clients when the native addon was built
     * (BLOB_SENDFILE, default `auto`).
     */
    blobSendfile: SendfileMode;
    /** `presigned` (BLOB_REDIRECT, S3 storage): a blob hit answers 307 to a presigned GET URL of its object. */
    blobRedirect: 'off' | 'presigned';
    /** How long a presigned blob URL is valid (BLOB_REDIRECT_TTL_SECONDS). */
    blobRedirectTtlSeconds: number;
    /**
     * How old an unreferenced object or a temporary object must be before the orphan cleanup deletes it
     * (ORPHAN_GRACE_PERIOD_MS): younger ones may belong to a fill between its commit and its row.
     */
    orphanGracePeriodMs: number;
  };
  security: {
    encryptionKey: string | undefined;
    /** Keys that sealed older credentials (rotation): still accepted for decryption, never for encryption. */
    encryptionPreviousKeys: string[];
    jwtPrivateKey: string | undefined;
    jwtPreviousPublicKey: string | undefined;
    jwtTtlSeconds: number;
    initialAdminToken: string | undefined;
  };
  upstream: {
    allowPrivate: boolean;
    allowlist: string[];
    connectTimeoutMs: number;
    headersTimeoutMs: number;
    bodyTimeoutMs: number;
    /** Consecutive failures (connection, timeout, 5xx) that open an upstream's circuit breaker (UPSTREAM_BREAKER_FAILURES). */
    breakerFailures: number;
    /** First cool-down of an open breaker (UPSTREAM_BREAKER_COOLDOWN_MS); doubles while the probes fail. */
    breakerCooldownMs: number;
    /** Longest cool-down (UPSTREAM_BREAKER_MAX_COOLDOWN_MS). */
    breakerMaxCooldownMs: number;
    /** How long an upstream's 404 for a manifest is remembered (UPSTREAM_NEGATIVE_CACHE_MS; 0 = off). */
    negativeCacheMs: number;
    /** Rate-limit budget kept for misses: under it, cached tags are served stale instead of re-fetched (UPSTREAM_RATELIMIT_RESERVE). */
    rateLimitReserve: number;
  };
  limits: {
    registriesPerGroup: number;
    upstreamsPerRegistry: number;
    maxCachedFileSize: number;
    maxManifestSize: number;
    pullRateLimitPerMinute: number;
    loginFailuresPerMinute: number;
    /** Bytes of live cache entries one group may keep (GROUP_STORAGE_QUOTA); 0 = no quota. */
    groupStorageQuota: number;
    /**
     * How long a replica keeps pull decisions, registries, working credentials, hot manifests and served blobs' entries in memory (MEMORY_CACHE_TTL_MS; 0 = off).
     * Changes made through this replica's admin API, and through any replica's when REDIS_URL is set,
     * clear them at once; this bounds what a replica that missed the news can serve.
     */
    memoryCacheTtlMs: number;
    /** Bytes of manifests kept in memory per replica (MEMORY_CACHE_SIZE). */
    memoryCacheSize: number;
    /** Fill an image's next layer once a client's GET of the one before has its bytes (BLOB_READ_AHEAD). */
    blobReadAhead: boolean;
  };
}

export interface RootRegistries {
  defaultRegistryId: number | undefined;
  /** Lower-case host name (with `:port` when the mapping names one) to registry id. */
  byHost: Record<string, number>;
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function int(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v)) throw new ConfigValidationError(name, `must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigValidationError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  throw new ConfigValidationError(name, `must be true or false, got "${v}"`);
}

/** BLOB_SENDFILE: `auto` (default), `on` (or true, 1, yes), `off` (or false, 0, no). */
function sendfileMode(env: Env): SendfileMode {
  const v = raw(env, 'BLOB_SENDFILE');
  if (v === undefined || /^auto$/i.test(v)) return 'auto';
  if (/^(true|1|yes|on)$/i.test(v)) return 'on';
  if (/^(false|0|no|off)$/i.test(v)) return 'off';
  throw new ConfigValidationError('BLOB_SENDFILE', `must be auto, on or off, got "${v}"`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new ConfigValidationError(name, `must be one of ${allowed.join(', ')}, got "${v}"`);
  }
  return v as T;
}

function url(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigValidationError(name, `is not a valid URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigValidationError(name, `must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  if (!parsed.hostname && !parsed.searchParams.get('host')) {
    throw new ConfigValidationError(name, `has no host`);
  }
  return v;
}

/** Bytes with an optional unit: 5368709120, 5GiB, 512MiB, 4MB. */
function size(env: Env, name: string, fallback: number): number {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  const m = /^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?$/i.exec(v);
  if (!m) throw new ConfigValidationError(name, `must be a size like 5368709120 or 5GiB, got "${v}"`);
  const units: Record<string, number> = {
    b: 1,
    kb: 1e3,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
    tb: 1e12,
    tib: 1024 ** 4,
  };
  return Number(m[1]) * units[(m[2] ?? 'b').toLowerCase()];
}

function isEncryptionKey(value: string): boolean {
  return /^[0-9a-f]{64}$/i.test(value) || Buffer.from(value, 'base64').length === 32;
}

/** `<IPv4 or IPv6 address>/<prefix length>`. */
function isCidr(value: string): boolean {
  const [addr, bits, extra] = value.split('/');
  const family = isIP(addr);
  return family !== 0 && extra === undefined && /^\d{1,3}$/.test(bits ?? '') && Number(bits) <= (family === 6 ? 128 : 32);
}

function allowlist(env: Env, name: string): string[] {
  const v = raw(env, name);
  if (v === undefined) return [];
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    if (item.includes('/')) {
      if (!isCidr(item)) throw new ConfigValidationError(name, `has an invalid CIDR "${item}"`);
    } else if (!isIP(item) && !/^[a-z0-9.-]+(:\d+)?$/i.test(item)) {
      throw new ConfigValidationError(name, `has an invalid host "${item}"`);
    }
  }
  return items;
}

/** proxy-addr's named ranges, accepted in TRUST_PROXY lists as by Fastify. */
const TRUST_PROXY_RANGES = ['loopback', 'linklocal', 'uniquelocal'];

/** TRUST_PROXY: `true`/`false`, a hop count, or comma-separated IPs, CIDRs and named ranges. */
function trustProxy(env: Env, name: string): TrustProxy {
  const v = raw(env, name);
  if (v === undefined || /^false$/i.test(v)) return false;
  if (/^true$/i.test(v)) return true;
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    if (hops > 100) throw new ConfigValidationError(name, `must be a hop count between 0 and 100, got ${hops}`);
    return hops === 0 ? false : hops;
  }
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    const valid = TRUST_PROXY_RANGES.includes(item) || (item.includes('/') ? isCidr(item) : isIP(item) !== 0);
    if (!valid) {
      throw new ConfigValidationError(name, `must be true, false, a hop count, or IPs/CIDRs separated by commas; "${item}" is none of these`);
    }
  }
  return items;
}

/** A registry id as the pull routes accept it: a positive Postgres `integer`. */
function registryId(name: string, value: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > 2_147_483_647) {
    throw new ConfigValidationError(name, `must name a registry by its id (a positive whole number), got "${value}"`);
  }
  return Number(value);
}

/** MIRROR_DEFAULT_REGISTRY and MIRROR_HOST_REGISTRIES (`hub-mirror.example=3,ghcr-mirror.example:8443=4`). */
function rootRegistries(env: Env): RootRegistries {
  const fallback = raw(env, 'MIRROR_DEFAULT_REGISTRY');
  const byHost: Record<string, number> = {};
  for (const item of (raw(env, 'MIRROR_HOST_REGISTRIES') ?? '')
    .split(',')
    .map((i) => i.trim())
    .filter(Boolean)) {
    const at = item.lastIndexOf('=');
    const host = at > 0 ? item.slice(0, at).trim().toLowerCase() : '';
    if (!/^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/.test(host)) {
      throw new ConfigValidationError('MIRROR_HOST_REGISTRIES', `must be host=registry id pairs separated by commas; "${item}" is not one`);
    }
    if (host in byHost) throw new ConfigValidationError('MIRROR_HOST_REGISTRIES', `names ${host} twice`);
    byHost[host] = registryId('MIRROR_HOST_REGISTRIES', item.slice(at + 1).trim());
  }
  return { defaultRegistryId: fallback === undefined ? undefined : registryId('MIRROR_DEFAULT_REGISTRY', fallback), byHost };
}

/**
 * The Environment of a set of variables. The process entry points call it once with process.env and pass
 * the result on (AppModule.forRoot); tests call it with their own.
 */
export function parseEnvironment(env: Env): Environment {
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const redisUrl = url(env, 'REDIS_URL', ['redis:', 'rediss:']);
  const storageDriver = oneOf<StorageDriverName>(env, 'STORAGE_DRIVER', ['filesystem', 's3'], 'filesystem');
  const queueDriver = oneOf<QueueDriverName>(env, 'QUEUE_DRIVER', ['bullmq', 'inline'], redisUrl ? 'bullmq' : 'inline');
  if (queueDriver === 'bullmq' && !redisUrl) {
    throw new ConfigValidationError('QUEUE_DRIVER', 'is bullmq but REDIS_URL is not set');
  }
  const role = oneOf(env, 'APP_ROLE', ['api', 'worker'] as const, 'api');
  const runJobsSetting = oneOf(env, 'RUN_JOBS', ['auto', 'true', 'false'] as const, 'auto');
  if (runJobsSetting === 'false' && (queueDriver === 'inline' || role === 'worker')) {
    throw new ConfigValidationError(
      'RUN_JOBS',
      queueDriver === 'inline'
        ? 'cannot be false with the in-process queue (QUEUE_DRIVER=inline): nothing else would run the jobs'
        : 'cannot be false in the worker process (APP_ROLE=worker)',
    );
  }
  const queuePrefix = raw(env, 'QUEUE_PREFIX') ?? 'bull';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(queuePrefix)) {
    throw new ConfigValidationError('QUEUE_PREFIX', `must be 1-64 letters, digits, '.', '_' or '-', got "${queuePrefix}"`);
  }
  const runJobs = runJobsSetting === 'auto' ? queueDriver === 'inline' || role === 'worker' : runJobsSetting === 'true';
  // `auto` means one process where the embedded database or the in-process queue allows no more.
  const oneProcessOnly = !databaseUrl || queueDriver !== 'bullmq';
  const httpWorkersAuto = raw(env, 'HTTP_WORKERS')?.toLowerCase() === 'auto';
  const httpWorkers = httpWorkersAuto ? (oneProcessOnly ? 1 : usableCpus()) : int(env, 'HTTP_WORKERS', 1, 1, 256);
  if (httpWorkers > 1 && oneProcessOnly) {
    throw new ConfigValidationError(
      'HTTP_WORKERS',
      `is ${httpWorkers}, but the embedded database and the in-process queue belong to one process: set DATABASE_URL and REDIS_URL, or HTTP_WORKERS=1`,
    );
  }
  const publicUrl = url(env, 'PUBLIC_URL', ['http:', 'https:']);
  const peerUrl = url(env, 'PEER_URL', ['http:']);
  if (peerUrl !== undefined && new URL(peerUrl).origin !== peerUrl.replace(/\/+$/, '')) {
    throw new ConfigValidationError('PEER_URL', 'must be http://host:port, with no path, query or credentials');
  }

  const s3 = {
    endpoint: url(env, 'S3_ENDPOINT', ['http:', 'https:']),
    bucket: raw(env, 'S3_BUCKET'),
    region: raw(env, 'S3_REGION') ?? 'us-east-1',
    accessKeyId: raw(env, 'S3_ACCESS_KEY_ID'),
    secretAccessKey: raw(env, 'S3_SECRET_ACCESS_KEY'),
    forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE', false),
    publicEndpoint: url(env, 'S3_PUBLIC_ENDPOINT', ['http:', 'https:'])?.replace(/\/+$/, ''),
  };
  if (storageDriver === 's3' && !s3.bucket) {
    throw new ConfigValidationError('S3_BUCKET', 'is required when STORAGE_DRIVER=s3');
  }
  if (storageDriver === 's3' && Boolean(s3.accessKeyId) !== Boolean(s3.secretAccessKey)) {
    throw new ConfigValidationError('S3_SECRET_ACCESS_KEY', 'and S3_ACCESS_KEY_ID must be set together');
  }
  const blobOffload = oneOf(env, 'BLOB_OFFLOAD', ['off', 'x-accel'] as const, 'off');
  if (blobOffload === 'x-accel' && storageDriver !== 'filesystem') {
    throw new ConfigValidationError(
      'BLOB_OFFLOAD',
      'x-accel needs STORAGE_DRIVER=filesystem (nginx sends the files of the storage directory); use BLOB_REDIRECT=presigned with S3',
    );
  }
  const blobRedirect = oneOf(env, 'BLOB_REDIRECT', ['off', 'presigned'] as const, 'off');
  if (blobRedirect === 'presigned' && storageDriver !== 's3') {
    throw new ConfigValidationError('BLOB_REDIRECT', 'presigned needs STORAGE_DRIVER=s3');
  }
  // SigV4 presigned URLs are valid for at most 7 days.
  const blobRedirectTtlSeconds = int(env, 'BLOB_REDIRECT_TTL_SECONDS', 300, 1, 604_800);

  const encryptionKey = raw(env, 'ENCRYPTION_KEY');
  if (encryptionKey !== undefined && !isEncryptionKey(encryptionKey)) {
    throw new ConfigValidationError('ENCRYPTION_KEY', 'must be 32 bytes, as 64 hex characters or base64');
  }
  const encryptionPreviousKeys = (raw(env, 'ENCRYPTION_PREVIOUS_KEYS') ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
  if (encryptionPreviousKeys.some((k) => !isEncryptionKey(k))) {
    throw new ConfigValidationError('ENCRYPTION_PREVIOUS_KEYS', 'must be a comma-separated list of 32-byte keys (64 hex characters or base64)');
  }
  const jwtPrivateKey = raw(env, 'JWT_PRIVATE_KEY');
  if (jwtPrivateKey !== undefined && !jwtPrivateKey.includes('PRIVATE KEY')) {
    throw new ConfigValidationError('JWT_PRIVATE_KEY', 'must be a PEM private key');
  }
  const initialAdminToken = raw(env, 'INITIAL_ADMIN_TOKEN');
  if (initialAdminToken !== undefined && initialAdminToken.length < 20) {
    throw new ConfigValidationError('INITIAL_ADMIN_TOKEN', 'must be at least 20 characters');
  }

  return {
    app: {
      port: int(env, 'PORT', 3000, 0, 65535),
      host: raw(env, 'HOST') ?? '0.0.0.0',
      publicUrl: publicUrl?.replace(/\/+$/, ''),
      peerUrl: peerUrl?.replace(/\/+$/, ''),
      dataDir: resolve(raw(env, 'DATA_DIR') ?? './data'),
      logLevel: oneOf<LogLevel>(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
      shutdownTimeoutMs: int(env, 'SHUTDOWN_TIMEOUT_MS', 25000, 0),
      role,
      httpWorkers,
      trustProxy: trustProxy(env, 'TRUST_PROXY'),
      rootRegistries: rootRegistries(env),
    },
    database: {
      url: databaseUrl,
      migrationsRun: bool(env, 'DATABASE_MIGRATIONS_RUN', true),
      poolSize: int(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
      poolIdleTimeoutMs: int(env, 'DATABASE_POOL_IDLE_TIMEOUT_MS', 300_000, 0, 86_400_000),
    },
    queue: {
      driver: queueDriver,
      redisUrl,
      concurrency: int(env, 'QUEUE_CONCURRENCY', 4, 1, 1000),
      runJobs,
      prefix: queuePrefix,
    },
    storage: {
      driver: storageDriver,
      s3,
      blobOffload,
      blobSendfile: sendfileMode(env),
      blobRedirect,
      blobRedirectTtlSeconds,
      orphanGracePeriodMs: int(env, 'ORPHAN_GRACE_PERIOD_MS', 3_600_000, 0),
    },
    security: {
      encryptionKey,
      encryptionPreviousKeys,
      jwtPrivateKey: jwtPrivateKey?.replace(/\\n/g, '\n'),
      jwtPreviousPublicKey: raw(env, 'JWT_PREVIOUS_PUBLIC_KEY')?.replace(/\\n/g, '\n'),
      jwtTtlSeconds: int(env, 'JWT_TTL_SECONDS', 900, 60, 86400),
      initialAdminToken,
    },
    upstream: {
      allowPrivate: bool(env, 'UPSTREAM_ALLOW_PRIVATE', false),
      allowlist: allowlist(env, 'UPSTREAM_ALLOWLIST'),
      connectTimeoutMs: int(env, 'UPSTREAM_CONNECT_TIMEOUT_MS', 10000, 1),
      headersTimeoutMs: int(env, 'UPSTREAM_HEADERS_TIMEOUT_MS', 30000, 1),
      bodyTimeoutMs: int(env, 'UPSTREAM_BODY_TIMEOUT_MS', 60000, 1),
      breakerFailures: int(env, 'UPSTREAM_BREAKER_FAILURES', 3, 1, 1000),
      breakerCooldownMs: int(env, 'UPSTREAM_BREAKER_COOLDOWN_MS', 30_000, 1),
      breakerMaxCooldownMs: int(env, 'UPSTREAM_BREAKER_MAX_COOLDOWN_MS', 600_000, 1),
      negativeCacheMs: int(env, 'UPSTREAM_NEGATIVE_CACHE_MS', 30_000, 0, 3_600_000),
      rateLimitReserve: int(env, 'UPSTREAM_RATELIMIT_RESERVE', 10, 0),
    },
    limits: {
      registriesPerGroup: int(env, 'REGISTRIES_PER_GROUP', 5, 1, 10000),
      upstreamsPerRegistry: int(env, 'UPSTREAMS_PER_REGISTRY', 5, 1, 100),
      maxCachedFileSize: size(env, 'MAX_CACHED_FILE_SIZE', 5 * 1024 ** 3),
      maxManifestSize: size(env, 'MAX_MANIFEST_SIZE', 4 * 1024 ** 2),
      pullRateLimitPerMinute: int(env, 'PULL_RATE_LIMIT_PER_MINUTE', 0, 0),
      loginFailuresPerMinute: int(env, 'LOGIN_FAILURES_PER_MINUTE', 10, 1),
      groupStorageQuota: size(env, 'GROUP_STORAGE_QUOTA', 0),
      memoryCacheTtlMs: int(env, 'MEMORY_CACHE_TTL_MS', 5000, 0, 600_000),
      memoryCacheSize: size(env, 'MEMORY_CACHE_SIZE', 64 * 1024 ** 2),
      blobReadAhead: bool(env, 'BLOB_READ_AHEAD', true),
    },
  };
}

/**
 * The name of every variable parseEnvironment reads, found by parsing an empty environment that records
 * each lookup (every variable is read on that path). For checks of docker-compose.yml, .env.example and the README.
 */
export function environmentVariableNames(): string[] {
  const seen = new Set<string>();
  const recorder = new Proxy({} as Env, {
    get(_target, name) {
      if (typeof name === 'string') seen.add(name);
      return undefined;
    },
  });
  parseEnvironment(recorder);
  return [...seen].sort();
}
