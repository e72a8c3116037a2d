/**
 * A real upstream registry for e2e tests: Debian's CNCF Distribution 2.8 (`docker-registry serve`), on
 * 127.0.0.1 with a random free port, filesystem storage in a fresh temp dir, deletes enabled, and its
 * access log (one line per request on stdout) parsed so tests can count what reached the upstream.
 *
 * Auth modes: `none`; `basic` (htpasswd file made with apache2-utils' `htpasswd -B`); `token` (Bearer
 * tokens from {@link startTokenServer}, started here unless one is passed in).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseAccessLogLine, type AccessLogEntry } from './access-log.js';
import { startTokenServer, UPSTREAM_CREDENTIALS, type RegistryCredentials, type TokenServer, type TokenServerOptions } from './token-server.js';

export type UpstreamAuthMode = 'none' | 'basic' | 'token';

export interface UpstreamRegistryOptions {
  auth?: UpstreamAuthMode;
  /** The one user for `basic` and (unless `tokenServer` is given) `token`; default {@link UPSTREAM_CREDENTIALS}. */
  credentials?: RegistryCredentials;
  /** `token` mode: use this token server instead of starting one (it is then not stopped by close()). */
  tokenServer?: TokenServer;
  /** `token` mode: options for the token server started here. */
  tokenServerOptions?: Omit<TokenServerOptions, 'users'>;
  /** Fixed port (default: a free random one). */
  port?: number;
  /** Storage root (default: a fresh temp dir, deleted by close()). */
  storageDir?: string;
  /** Distribution's own log level on stderr (default `warn`; the access log is independent of it). */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Binary to run; default `docker-registry` (Debian's package). */
  binary?: string;
  /** How long to wait for `/v2/` to answer; default 20 s. */
  startTimeoutMs?: number;
}

export interface UpstreamRegistry {
  /** `http://127.0.0.1:<port>` (no trailing slash, no /v2). */
  readonly url: string;
  /** `127.0.0.1:<port>`, the form image references and skopeo use. */
  readonly host: string;
  readonly port: number;
  readonly auth: UpstreamAuthMode;
  /** Credentials clients must use in `basic`/`token` mode; undefined for `none`. */
  readonly credentials?: RegistryCredentials;
  /** The token server in `token` mode. */
  readonly tokenServer?: TokenServer;
  readonly storageDir: string;
  /** True while the process runs (also while frozen). */
  readonly running: boolean;
  /** The registry process's id while it runs (the benchmark counts its CPU time). */
  readonly pid: number | undefined;
  /** Stops the process gracefully (SIGTERM); storage and port are kept for restart(). */
  stop(): Promise<void>;
  /** SIGKILLs the process (an abrupt outage); storage and port are kept for restart(). */
  kill(): Promise<void>;
  /** Starts the process again on the same port and storage (stops it first if it runs). */
  restart(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel but never answered (a hanging upstream). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /**
   * Access-log entries since the last reset() (or since `since`, a value from mark()). While the registry
   * runs it first round-trips a marker request, so every request answered before the call is included.
   */
  requests(since?: number): Promise<AccessLogEntry[]>;
  /** A position in the access log; pass it to requests() to see only later requests. */
  mark(): Promise<number>;
  /** Makes requests() without an argument start from now. */
  reset(): Promise<void>;
  /** Where Distribution stores a blob's bytes (to corrupt or delete it behind the registry's back). */
  blobPath(digest: string): string;
  /** The last lines of Distribution's stderr (its own log), for failure messages. */
  stderrTail(): string;
  /** Stops the process and the token server started here, and deletes the temp storage. */
  close(): Promise<void>;
}

/** Marker in the query string of the requests this module makes itself; they never show in requests(). */
const INTERNAL_QUERY = 'upstream-fixture-internal';

const live = new Set<{ child?: ChildProcess; dirs: string[] }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const entry of live) {
      if (entry.child && entry.child.exitCode === null && entry.child.signalCode === null) entry.child.kill('SIGKILL');
      for (const dir of entry.dirs) rmSync(dir, { recursive: true, force: true });
    }
  });
}

/**
 * A port for a child process to listen on. It is taken below the kernel's ephemeral range, because a port
 * from `listen(0)` lies inside that range and any outgoing connection made while the child boots (several
 * seconds for an app on the embedded database) can take it first: the child then dies with EADDRINUSE.
 * Below the range only another explicit listener can collide, and the port is checked free before use.
 */
export async function findFreePort(): Promise<number> {
  const ephemeralLow = ephemeralRangeStart();
  const low = Math.max(1024, ephemeralLow - 12_000);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (ephemeralLow - low));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found in ${low}-${ephemeralLow - 1}`);
}

function ephemeralRangeStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 2048) return low;
  } catch {
    // not Linux: the IANA default
  }
  return 49152;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function htpasswdLine(credentials: RegistryCredentials): string {
  try {
    return execFileSync('htpasswd', ['-nbB', credentials.username, credentials.password], { encoding: 'utf8' }).trim();
  } catch (err) {
    throw new Error(`basic-auth upstream needs apache2-utils' htpasswd (apt-get install apache2-utils): ${String(err)}`, { cause: err });
  }
}

function yamlString(value: string): string {
  return JSON.stringify(value);
}

/** A timer that never keeps the process (jest) alive by itself. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export async function startUpstreamRegistry(options: UpstreamRegistryOptions = {}): Promise<UpstreamRegistry> {
  const auth = options.auth ?? 'none';
  const binary = options.binary ?? 'docker-registry';
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const workDir = await mkdtemp(join(tmpdir(), 'upstream-registry-'));
  const tracked: { child?: ChildProcess; dirs: string[] } = { dirs: [workDir] };
  installExitHook();
  live.add(tracked);

  const storageDir = options.storageDir ?? join(workDir, 'storage');
  await mkdir(storageDir, { recursive: true });
  const credentials = auth === 'none' ? undefined : (options.credentials ?? { ...UPSTREAM_CREDENTIALS });

  let tokenServer: TokenServer | undefined;
  let ownsTokenServer = false;
  let authYaml = '';
  try {
    if (auth === 'basic' && credentials) {
      const htpasswdPath = join(workDir, 'htpasswd');
      await writeFile(htpasswdPath, `${htpasswdLine(credentials)}\n`);
      authYaml = `auth:\n  htpasswd:\n    realm: "upstream-basic-realm"\n    path: ${yamlString(htpasswdPath)}\n`;
    } else if (auth === 'token' && credentials) {
      tokenServer = options.tokenServer;
      if (!tokenServer) {
        tokenServer = await startTokenServer({
          ...options.tokenServerOptions,
          users: { [credentials.username]: credentials.password },
        });
        ownsTokenServer = true;
      }
      authYaml =
        `auth:\n  token:\n    realm: ${yamlString(tokenServer.realm)}\n    service: ${yamlString(tokenServer.service)}\n` +
        `    issuer: ${yamlString(tokenServer.issuer)}\n    rootcertbundle: ${yamlString(tokenServer.rootCertBundlePath)}\n`;
    }
  } catch (err) {
    live.delete(tracked);
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }

  const secret = randomBytes(16).toString('hex');
  const configFor = (port: number): string =>
    [
      'version: 0.1',
      'log:',
      `  level: ${options.logLevel ?? 'warn'}`,
      '  formatter: json',
      '  accesslog:',
      '    disabled: false',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${yamlString(storageDir)}`,
      '  delete:',
      '    enabled: true',
      '  maintenance:',
      '    uploadpurging:',
      '      enabled: false',
      'http:',
      `  addr: ${yamlString(`127.0.0.1:${port}`)}`,
      `  secret: ${yamlString(secret)}`,
      '  headers:',
      '    X-Content-Type-Options: [nosniff]',
      authYaml.trimEnd(),
      '',
    ].join('\n');
  const configPath = join(workDir, 'config.yml');

  const entries: AccessLogEntry[] = [];
  let baseline = 0;
  let syncCounter = 0;
  const syncWaiters = new Map<string, () => void>();
  const stderrLines: string[] = [];
  let child: ChildProcess | undefined;
  let closed: Promise<void> = Promise.resolve();
  let frozen = false;
  let port = options.port ?? (await findFreePort());

  const isRunning = (): boolean => !!child && child.exitCode === null && child.signalCode === null;

  const spawnOnce = async (): Promise<void> => {
    await writeFile(configPath, configFor(port));
    const proc = spawn(binary, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    tracked.child = proc;
    frozen = false;
    closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
    const spawnError = new Promise<never>((_, reject) => proc.once('error', reject));
    spawnError.catch(() => undefined);

    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const entry = parseAccessLogLine(line);
      if (!entry) return;
      const markerAt = entry.uri.indexOf(`${INTERNAL_QUERY}=`);
      if (markerAt >= 0) {
        const marker = entry.uri.slice(markerAt + INTERNAL_QUERY.length + 1);
        syncWaiters.get(marker)?.();
        return;
      }
      entries.push(entry);
    });
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      stderrLines.push(line);
      if (stderrLines.length > 200) stderrLines.shift();
    });

    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (!isRunning()) {
        await Promise.race([closed, spawnError, delay(1000)]).catch((err: unknown) => {
          throw new Error(`could not run ${binary}: ${String(err)}`);
        });
        throw new Error(`${binary} exited during startup (code ${proc.exitCode}, signal ${proc.signalCode}):\n${stderrLines.slice(-20).join('\n')}`);
      }
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v2/?${INTERNAL_QUERY}=probe`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200 || res.status === 401) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        await closed;
        throw new Error(`${binary} did not answer /v2/ within ${startTimeoutMs} ms:\n${stderrLines.slice(-20).join('\n')}`);
      }
      await delay(50);
    }
  };

  const start = async (): Promise<void> => {
    const portFixed = options.port !== undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        await spawnOnce();
        return;
      } catch (err) {
        const inUse = stderrLines.some((l) => l.includes('address already in use'));
        if (!inUse || portFixed || attempt >= 4) throw err;
        stderrLines.length = 0;
        port = await findFreePort();
      }
    }
  };

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    if (!child || !isRunning()) return;
    const proc = child;
    if (frozen) proc.kill('SIGCONT');
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await closed;
    clearTimeout(timer);
    frozen = false;
  };

  /** Round-trips a marker request so the access log holds every request answered before this call. */
  const syncLog = async (): Promise<void> => {
    if (!isRunning() || frozen) return;
    const marker = `sync-${++syncCounter}`;
    const seen = new Promise<void>((resolve) => syncWaiters.set(marker, resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/?${INTERNAL_QUERY}=${marker}`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      await Promise.race([seen, closed, delay(5000)]);
    } catch {
      // the registry went away meanwhile: what was logged is all there is
    } finally {
      syncWaiters.delete(marker);
    }
  };

  try {
    await start();
  } catch (err) {
    live.delete(tracked);
    if (ownsTokenServer) await tokenServer?.stop();
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }

  const registry: UpstreamRegistry = {
    get pid() {
      return child && isRunning() ? child.pid : undefined;
    },
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get host() {
      return `127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    auth,
    credentials,
    tokenServer,
    storageDir,
    get running() {
      return isRunning();
    },
    stop: () => terminate('SIGTERM'),
    kill: () => terminate('SIGKILL'),
    async restart() {
      await terminate('SIGTERM');
      await spawnOnce();
    },
    freeze() {
      if (!child || !isRunning()) throw new Error('upstream registry is not running');
      child.kill('SIGSTOP');
      frozen = true;
      // The signal is delivered asynchronously: wait (up to 1 s) until the kernel shows the process stopped.
      const pause = new Int32Array(new SharedArrayBuffer(4));
      for (let i = 0; i < 200; i++) {
        const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
        if (/\) [Tt] /.test(stat)) break;
        Atomics.wait(pause, 0, 0, 5);
      }
    },
    thaw() {
      if (child && isRunning() && frozen) child.kill('SIGCONT');
      frozen = false;
    },
    async requests(since?: number) {
      await syncLog();
      return entries.slice(since ?? baseline);
    },
    async mark() {
      await syncLog();
      return entries.length;
    },
    async reset() {
      await syncLog();
      baseline = entries.length;
    },
    blobPath(digest: string) {
      const [algorithm, hex] = digest.split(':');
      return join(storageDir, 'docker', 'registry', 'v2', 'blobs', algorithm, hex.slice(0, 2), hex, 'data');
    },
    stderrTail() {
      return stderrLines.slice(-40).join('\n');
    },
    async close() {
      await terminate('SIGTERM');
      live.delete(tracked);
      if (ownsTokenServer) await tokenServer?.stop();
      await rm(workDir, { recursive: true, force: true });
    },
  };
  return registry;
}

export { UPSTREAM_CREDENTIALS, type RegistryCredentials, type TokenServer } from './token-server.js';
export type { AccessLogEntry } from './access-log.js';
