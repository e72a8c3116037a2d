/**
 * Reference peer 2: nginx as a caching reverse proxy in front of the same upstream, the way operators set
 * one up for a registry: `proxy_cache` for 200/206 answers (manifests keyed by URI and Accept, blobs by URI),
 * `proxy_cache_lock` so concurrent misses make one upstream request (followers wait for it to finish).
 * It has no auth of its own. A fresh cache is a new nginx with a new, empty cache directory.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findFreePort } from '../../test/support/upstream-registry.js';
import type { StartedProcess, StartedProcesses } from '../started-processes.js';
import type { PullSystem } from './pull-system.js';
import { waitForHttp } from './wait-for-http.js';

export class NginxCacheSystem implements PullSystem {
  readonly id = 'nginx' as const;
  private process?: StartedProcess;
  private port = 0;
  private generation = 0;
  private prefixDir?: string;

  constructor(
    private readonly upstreamUrl: string,
    private readonly workDir: string,
    private readonly processes: StartedProcesses,
    private readonly binary = 'nginx',
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
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

  async freshCache(): Promise<void> {
    await this.stopCurrent();
    this.generation += 1;
    const prefix = join(this.workDir, `nginx-${this.generation}`);
    this.prefixDir = prefix;
    for (const dir of ['cache', 'temp', 'logs']) await mkdir(join(prefix, dir), { recursive: true });
    this.port = await findFreePort();
    const configPath = join(prefix, 'nginx.conf');
    await writeFile(configPath, this.config(prefix));
    const errorLog = join(prefix, 'logs', 'error.log');
    const started = this.processes.spawn('nginx', this.binary, ['-p', prefix, '-c', configPath, '-e', errorLog], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.process = started;
    let stderr = '';
    started.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitForHttp(`${this.baseUrl}/v2/`, [200], started, () => `${stderr}${logTail(errorLog)}`);
  }

  async settle(): Promise<void> {}

  processGroups(): number[] {
    return this.process ? [this.process.pid] : [];
  }

  async close(): Promise<void> {
    await this.stopCurrent();
  }

  private async stopCurrent(): Promise<void> {
    if (this.process) await this.processes.stop(this.process, 'SIGTERM');
    this.process = undefined;
    if (this.prefixDir) await rm(this.prefixDir, { recursive: true, force: true });
    this.prefixDir = undefined;
  }

  private config(prefix: string): string {
    const upstream = new URL(this.upstreamUrl);
    // Workers of a root master run as `nobody` unless told otherwise; they must write the cache directory.
    const user = process.getuid?.() === 0 ? 'user root;' : '';
    return `
${user}
daemon off;
worker_processes auto;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'logs', 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${join(prefix, 'temp', 'client')};
  proxy_temp_path ${join(prefix, 'temp', 'proxy')};
  fastcgi_temp_path ${join(prefix, 'temp', 'fastcgi')};
  uwsgi_temp_path ${join(prefix, 'temp', 'uwsgi')};
  scgi_temp_path ${join(prefix, 'temp', 'scgi')};
  proxy_cache_path ${join(prefix, 'cache')} levels=1:2 keys_zone=registry:16m max_size=20g inactive=7d use_temp_path=off;

  # A tag's manifest depends on the Accept header; blobs do not.
  map $uri $registry_cache_vary {
    ~/manifests/ $http_accept;
    default "";
  }
  upstream registry_upstream {
    server ${upstream.host};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${this.port};
    client_max_body_size 0;
    location /v2/ {
      proxy_pass http://registry_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering on;
      proxy_cache registry;
      proxy_cache_key "$uri|$registry_cache_vary";
      proxy_cache_valid 200 206 24h;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10m;
      proxy_cache_lock_age 10m;
      proxy_read_timeout 10m;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }
}
`;
  }
}

/** The last lines of nginx's error log, for a startup failure message. */
function logTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}
