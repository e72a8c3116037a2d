import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { findFreePort } from './upstream-registry.js';

/** The nginx front shipped in the repository (docker-compose.yml uses the same file). */
export const FRONT_TEMPLATE = resolve(process.cwd(), 'deploy/nginx/registry.conf.template');

export interface FrontVariables {
  /** `127.0.0.1:<port>` */
  REGISTRY_LISTEN: string;
  /** `127.0.0.1:<port>` of the app (one replica, or several separated by nothing: one `server` line) */
  REGISTRY_API: string;
  /** The filesystem store's root (DATA_DIR/blobs). */
  REGISTRY_BLOB_ROOT: string;
}

/** The shipped template with its variables substituted, as envsubst does in the nginx image. */
export function renderFrontConfig(vars: FrontVariables, template = readFileSync(FRONT_TEMPLATE, 'utf8')): string {
  const rendered = template.replace(/\$\{([A-Z_]+)\}/g, (whole, name: string) => {
    if (!(name in vars)) throw new Error(`${FRONT_TEMPLATE} uses \${${name}}, which the test does not set`);
    return vars[name as keyof FrontVariables];
  });
  return rendered;
}

export interface NginxFront {
  /** `http://127.0.0.1:<port>` */
  url: string;
  prefix: string;
  /** The lines nginx logged to its access log (one per request: status, bytes sent, upstream status). */
  accessLog(): string[];
  errorLog(): string;
  stop(): Promise<void>;
}

export interface FrontPrefix {
  /** nginx's arguments: prefix, configuration, error log, in the foreground. */
  args: string[];
  errorLog: string;
  accessLog: string;
}

/**
 * Writes a main nginx.conf into `prefix` (its own pid file, logs and temp directories) that includes the
 * shipped front configuration for an app at `apiUrl` and a store at `blobRoot`, listening on 127.0.0.1:`port`.
 */
export function writeFrontPrefix(
  prefix: string,
  options: { port: number; apiUrl: string; blobRoot: string; workers?: number | 'auto'; accessLog?: boolean },
): FrontPrefix {
  for (const dir of ['logs', 'temp']) mkdirSync(join(prefix, dir), { recursive: true });
  writeFileSync(
    join(prefix, 'registry.conf'),
    renderFrontConfig({ REGISTRY_LISTEN: `127.0.0.1:${options.port}`, REGISTRY_API: new URL(options.apiUrl).host, REGISTRY_BLOB_ROOT: options.blobRoot }),
  );
  const errorLog = join(prefix, 'logs', 'error.log');
  const accessLog = join(prefix, 'logs', 'access.log');
  // Workers of a root master run as `nobody` unless told otherwise: they must read the app's store.
  const user = process.getuid?.() === 0 ? 'user root;' : '';
  writeFileSync(
    join(prefix, 'nginx.conf'),
    `${user}
worker_processes ${options.workers ?? 1};
pid ${join(prefix, 'nginx.pid')};
error_log ${errorLog} warn;
events { worker_connections 4096; }
http {
  log_format front '$status $body_bytes_sent $request_method $request_uri upstream=$upstream_status';
  access_log ${options.accessLog === false ? 'off' : `${accessLog} front`};
  keepalive_requests 1000000;
  client_body_temp_path ${join(prefix, 'temp', 'client')};
  proxy_temp_path ${join(prefix, 'temp', 'proxy')};
  fastcgi_temp_path ${join(prefix, 'temp', 'fastcgi')};
  uwsgi_temp_path ${join(prefix, 'temp', 'uwsgi')};
  scgi_temp_path ${join(prefix, 'temp', 'scgi')};
  include ${join(prefix, 'registry.conf')};
}
`,
  );
  return { args: ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', errorLog, '-g', 'daemon off;'], errorLog, accessLog };
}

/**
 * Debian's nginx (/usr/sbin/nginx) in front of an app, with the shipped configuration: its own prefix,
 * pid file, logs and temp directories in a temporary directory, in the foreground (`daemon off`), on a
 * free loopback port. `stop()` ends it and removes the directory.
 */
export async function startNginxFront(options: { apiUrl: string; blobRoot: string; binary?: string }): Promise<NginxFront> {
  const prefix = mkdtempSync(join(tmpdir(), 'cvr-nginx-'));
  const port = await findFreePort();
  const { args, errorLog, accessLog } = writeFrontPrefix(prefix, { port, apiUrl: options.apiUrl, blobRoot: options.blobRoot });
  const child: ChildProcess = spawn(options.binary ?? '/usr/sbin/nginx', args, {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}${read(errorLog)}`);
    const up = await fetch(`${url}/-/health`).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not answer on ${url}: ${stderr}${read(errorLog)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    prefix,
    accessLog: () => read(accessLog).split('\n').filter(Boolean),
    errorLog: () => read(errorLog),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}
