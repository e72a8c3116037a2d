import { availableParallelism } from 'node:os';
import { ConfigValidationError, parseEnvironment } from './environment.js';

describe('parseEnvironment', () => {
  it('gives the embedded defaults with no variables at all', () => {
    const env = parseEnvironment({});
    expect(env.app.port).toBe(3000);
    expect(env.app.host).toBe('0.0.0.0');
    expect(env.app.dataDir).toMatch(/\/data$/);
    expect(env.database.url).toBeUndefined();
    expect(env.queue.driver).toBe('inline');
    expect(env.storage.driver).toBe('filesystem');
    expect(env.upstream.allowPrivate).toBe(false);
    expect(env.limits.maxCachedFileSize).toBe(5 * 1024 ** 3);
    expect(env.limits.registriesPerGroup).toBe(5);
    expect(env.limits.upstreamsPerRegistry).toBe(5);
    expect(env.limits.memoryCacheTtlMs).toBe(5000);
    expect(env.limits.memoryCacheSize).toBe(64 * 1024 ** 2);
    expect(env.limits.blobReadAhead).toBe(true);
  });

  it('sends blob hits with the native addon in auto mode unless told otherwise (BLOB_SENDFILE)', () => {
    expect(parseEnvironment({}).storage.blobSendfile).toBe('auto');
    expect(parseEnvironment({ BLOB_SENDFILE: 'AUTO' }).storage.blobSendfile).toBe('auto');
    for (const on of ['on', 'true', '1', 'yes']) expect(parseEnvironment({ BLOB_SENDFILE: on }).storage.blobSendfile).toBe('on');
    for (const off of ['off', 'false', '0', 'no']) expect(parseEnvironment({ BLOB_SENDFILE: off }).storage.blobSendfile).toBe('off');
    expect(() => parseEnvironment({ BLOB_SENDFILE: 'copy' })).toThrow(/BLOB_SENDFILE must be auto, on or off, got "copy"/);
  });

  it('offloads blob hits only when asked, each mode on the storage it needs (BLOB_OFFLOAD, BLOB_REDIRECT)', () => {
    const defaults = parseEnvironment({});
    expect([defaults.storage.blobOffload, defaults.storage.blobRedirect, defaults.storage.blobRedirectTtlSeconds]).toEqual(['off', 'off', 300]);
    expect(parseEnvironment({ BLOB_OFFLOAD: 'x-accel' }).storage.blobOffload).toBe('x-accel');
    const s3 = { STORAGE_DRIVER: 's3', S3_BUCKET: 'b', S3_ENDPOINT: 'http://minio:9000' };
    const presigned = parseEnvironment({ ...s3, BLOB_REDIRECT: 'presigned', BLOB_REDIRECT_TTL_SECONDS: '60', S3_PUBLIC_ENDPOINT: 'https://s3.example.com/' });
    expect([presigned.storage.blobRedirect, presigned.storage.blobRedirectTtlSeconds, presigned.storage.s3.publicEndpoint]).toEqual([
      'presigned',
      60,
      'https://s3.example.com',
    ]);
    expect(() => parseEnvironment({ ...s3, BLOB_OFFLOAD: 'x-accel' })).toThrow(/BLOB_OFFLOAD.*STORAGE_DRIVER=filesystem/);
    expect(() => parseEnvironment({ BLOB_REDIRECT: 'presigned' })).toThrow(/BLOB_REDIRECT.*STORAGE_DRIVER=s3/);
    expect(() => parseEnvironment({ BLOB_OFFLOAD: 'sendfile' })).toThrow(ConfigValidationError);
    expect(() => parseEnvironment({ ...s3, BLOB_REDIRECT_TTL_SECONDS: '0' })).toThrow(/BLOB_REDIRECT_TTL_SECONDS/);
    expect(() => parseEnvironment({ ...s3, S3_PUBLIC_ENDPOINT: 'ftp://s3' })).toThrow(/S3_PUBLIC_ENDPOINT/);
  });

  it('reads the root /v2 registries: none by default, a default one and a Host map', () => {
    expect(parseEnvironment({}).app.rootRegistries).toEqual({ defaultRegistryId: undefined, byHost: {} });
    const env = parseEnvironment({ MIRROR_DEFAULT_REGISTRY: '3', MIRROR_HOST_REGISTRIES: 'Hub-Mirror.example=4, ghcr-mirror.example:8443=5' });
    expect(env.app.rootRegistries).toEqual({ defaultRegistryId: 3, byHost: { 'hub-mirror.example': 4, 'ghcr-mirror.example:8443': 5 } });
  });

  it('keeps idle database connections 5 minutes by default, as long as DATABASE_POOL_IDLE_TIMEOUT_MS says, or for good with 0', () => {
    expect(parseEnvironment({}).database).toMatchObject({ poolSize: 10, poolIdleTimeoutMs: 300_000 });
    expect(parseEnvironment({ DATABASE_POOL_IDLE_TIMEOUT_MS: '30000' }).database.poolIdleTimeoutMs).toBe(30_000);
    expect(parseEnvironment({ DATABASE_POOL_IDLE_TIMEOUT_MS: '0' }).database.poolIdleTimeoutMs).toBe(0);
  });

  it('turns the memory caches off with MEMORY_CACHE_TTL_MS=0', () => {
    const env = parseEnvironment({ MEMORY_CACHE_TTL_MS: '0', MEMORY_CACHE_SIZE: '8MiB' });
    expect(env.limits.memoryCacheTtlMs).toBe(0);
    expect(env.limits.memoryCacheSize).toBe(8 * 1024 ** 2);
  });

  it('reads one layer ahead unless BLOB_READ_AHEAD=false', () => {
    expect(parseEnvironment({ BLOB_READ_AHEAD: 'false' }).limits.blobReadAhead).toBe(false);
    expect(parseEnvironment({ BLOB_READ_AHEAD: 'true' }).limits.blobReadAhead).toBe(true);
    expect(() => parseEnvironment({ BLOB_READ_AHEAD: 'sometimes' })).toThrow(/BLOB_READ_AHEAD/);
  });

  it('reads TRUST_PROXY as off, on, a hop count, or a list of addresses and ranges', () => {
    expect(parseEnvironment({}).app.trustProxy).toBe(false);
    expect(parseEnvironment({ TRUST_PROXY: 'false' }).app.trustProxy).toBe(false);
    expect(parseEnvironment({ TRUST_PROXY: '0' }).app.trustProxy).toBe(false);
    expect(parseEnvironment({ TRUST_PROXY: 'TRUE' }).app.trustProxy).toBe(true);
    expect(parseEnvironment({ TRUST_PROXY: '2' }).app.trustProxy).toBe(2);
    expect(parseEnvironment({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.7,fd00::/8, loopback' }).app.trustProxy).toEqual([
      '10.0.0.0/8',
      '192.168.1.7',
      'fd00::/8',
      'loopback',
    ]);
  });

  it('picks BullMQ when REDIS_URL is set', () => {
    const env = parseEnvironment({ REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://u@127.0.0.1:5432/db' });
    expect(env.queue.driver).toBe('bullmq');
    expect(env.database.url).toBe('postgres://u@127.0.0.1:5432/db');
  });

  it('parses sizes with units and allowlists with hosts and CIDRs', () => {
    const env = parseEnvironment({ MAX_CACHED_FILE_SIZE: '512MiB', UPSTREAM_ALLOWLIST: 'registry.local, 10.0.0.0/8,127.0.0.1' });
    expect(env.limits.maxCachedFileSize).toBe(512 * 1024 ** 2);
    expect(env.upstream.allowlist).toEqual(['registry.local', '10.0.0.0/8', '127.0.0.1']);
  });

  it('reads the previous encryption keys of a rotation as a list', () => {
    const env = parseEnvironment({
      ENCRYPTION_KEY: 'b'.repeat(64),
      ENCRYPTION_PREVIOUS_KEYS: ` ${'a'.repeat(64)} , ${Buffer.alloc(32, 1).toString('base64')}`,
    });
    expect(env.security.encryptionPreviousKeys).toEqual(['a'.repeat(64), Buffer.alloc(32, 1).toString('base64')]);
    expect(parseEnvironment({}).security.encryptionPreviousKeys).toEqual([]);
  });

  it.each([
    [{ STORAGE_DRIVER: 'foo' }, 'STORAGE_DRIVER'],
    [{ DATABASE_URL: 'not a url' }, 'DATABASE_URL'],
    [{ DATABASE_URL: 'mysql://localhost/db' }, 'DATABASE_URL'],
    [{ REDIS_URL: 'http://localhost' }, 'REDIS_URL'],
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PEER_URL: 'https://api-1:3000' }, 'PEER_URL'],
    [{ PEER_URL: 'api-1:3000' }, 'PEER_URL'],
    [{ PEER_URL: 'http://api-1:3000/registry' }, 'PEER_URL'],
    [{ PEER_URL: 'http://user:secret@api-1:3000' }, 'PEER_URL'],
    [{ PORT: '70000' }, 'PORT'],
    [{ UPSTREAM_ALLOW_PRIVATE: 'maybe' }, 'UPSTREAM_ALLOW_PRIVATE'],
    [{ UPSTREAM_ALLOWLIST: '10.0.0.0/99' }, 'UPSTREAM_ALLOWLIST'],
    [{ STORAGE_DRIVER: 's3' }, 'S3_BUCKET'],
    [{ ENCRYPTION_KEY: 'short' }, 'ENCRYPTION_KEY'],
    [{ ENCRYPTION_PREVIOUS_KEYS: `${'a'.repeat(64)},short` }, 'ENCRYPTION_PREVIOUS_KEYS'],
    [{ JWT_PRIVATE_KEY: 'not-a-pem' }, 'JWT_PRIVATE_KEY'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ QUEUE_DRIVER: 'bullmq' }, 'QUEUE_DRIVER'],
    [{ MAX_CACHED_FILE_SIZE: '5 gigs' }, 'MAX_CACHED_FILE_SIZE'],
    [{ MEMORY_CACHE_TTL_MS: '-1' }, 'MEMORY_CACHE_TTL_MS'],
    [{ MEMORY_CACHE_TTL_MS: '3600000' }, 'MEMORY_CACHE_TTL_MS'],
    [{ MEMORY_CACHE_SIZE: 'lots' }, 'MEMORY_CACHE_SIZE'],
    [{ TRUST_PROXY: 'yes please' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '10.0.0.0/33' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '10.0.0.1,proxy.local' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '1000' }, 'TRUST_PROXY'],
    [{ MIRROR_DEFAULT_REGISTRY: '0' }, 'MIRROR_DEFAULT_REGISTRY'],
    [{ MIRROR_DEFAULT_REGISTRY: 'hub' }, 'MIRROR_DEFAULT_REGISTRY'],
    [{ MIRROR_HOST_REGISTRIES: 'hub.example' }, 'MIRROR_HOST_REGISTRIES'],
    [{ MIRROR_HOST_REGISTRIES: 'hub.example=x' }, 'MIRROR_HOST_REGISTRIES'],
    [{ MIRROR_HOST_REGISTRIES: 'http://hub.example=1' }, 'MIRROR_HOST_REGISTRIES'],
    [{ MIRROR_HOST_REGISTRIES: 'a.example=1,A.example=2' }, 'MIRROR_HOST_REGISTRIES'],
    [{ DATABASE_POOL_IDLE_TIMEOUT_MS: 'soon' }, 'DATABASE_POOL_IDLE_TIMEOUT_MS'],
    [{ DATABASE_POOL_IDLE_TIMEOUT_MS: '86400001' }, 'DATABASE_POOL_IDLE_TIMEOUT_MS'],
    [{ HTTP_WORKERS: '0' }, 'HTTP_WORKERS'],
    [{ HTTP_WORKERS: 'many' }, 'HTTP_WORKERS'],
    [{ HTTP_WORKERS: '2' }, 'HTTP_WORKERS'],
    [{ HTTP_WORKERS: '2', DATABASE_URL: 'postgres://db/x' }, 'HTTP_WORKERS'],
    [{ HTTP_WORKERS: '2', REDIS_URL: 'redis://redis:6379' }, 'HTTP_WORKERS'],
  ])('refuses %j naming %s in a one-line message', (vars, variable) => {
    let error: unknown;
    try {
      parseEnvironment(vars);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigValidationError);
    expect((error as ConfigValidationError).variable).toBe(variable);
    expect((error as Error).message).toContain(variable);
    expect((error as Error).message).not.toContain('\n');
  });

  describe('HTTP_WORKERS', () => {
    const shared = { DATABASE_URL: 'postgres://db/x', REDIS_URL: 'redis://redis:6379' };

    it('serves HTTP in the process itself by default', () => {
      expect(parseEnvironment({}).app.httpWorkers).toBe(1);
      expect(parseEnvironment(shared).app.httpWorkers).toBe(1);
    });

    it('takes a count when the database and the queue are shared services', () => {
      expect(parseEnvironment({ ...shared, HTTP_WORKERS: '3' }).app.httpWorkers).toBe(3);
    });

    it('makes auto one per CPU with shared services, and 1 on the embedded defaults', () => {
      expect(parseEnvironment({ ...shared, HTTP_WORKERS: 'auto' }).app.httpWorkers).toBe(availableParallelism());
      expect(parseEnvironment({ HTTP_WORKERS: 'auto' }).app.httpWorkers).toBe(1);
      expect(parseEnvironment({ DATABASE_URL: shared.DATABASE_URL, HTTP_WORKERS: 'AUTO' }).app.httpWorkers).toBe(1);
    });
  });
});
