/**
 * docker-compose.yml, the Dockerfile, .env.example and the README agree with the build and the config
 * validator (issue 11): every app service runs a file `npm run build` produces, at the path the image
 * puts it; every variable they set is one src/config/environment.ts reads; services that serve no HTTP
 * do not inherit the image's HTTP healthcheck. Reads files only (`npm test` builds dist/ first).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parse } from 'yaml';
import { environmentVariableNames, parseEnvironment } from '../src/config/environment.js';

const root = process.cwd();
const read = (file: string) => readFileSync(join(root, file), 'utf8');
const known = new Set(environmentVariableNames());

interface ComposeService {
  image?: string;
  ports?: (string | number | { target?: number; published?: string | number })[];
  volumes?: (string | { source?: string; target?: string; read_only?: boolean })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  build?: unknown;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, unknown> | string[];
  env_file?: string | string[] | { path: string }[];
  healthcheck?: { disable?: boolean; test?: unknown };
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
const APP_IMAGE = 'container-virtual-registry';
/** The services built from this repository's Dockerfile. */
const appServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined || s.image?.split(':')[0] === APP_IMAGE);

/** The final stage of the Dockerfile: its WORKDIR, CMD, HEALTHCHECK and what it copies from the build stage. */
function finalStage(): { workdir: string; cmd: string[]; healthcheck: boolean; copies: { from: string; to: string }[]; buildWorkdir: string } {
  const stages = read('Dockerfile')
    .split(/^FROM /m)
    .slice(1);
  const buildWorkdir = /^WORKDIR (\S+)/m.exec(stages[0])?.[1] ?? '/';
  const last = stages[stages.length - 1];
  const workdir = [...last.matchAll(/^WORKDIR (\S+)/gm)].pop()?.[1] ?? '/';
  const cmdLine = /^CMD (\[.*\])\s*$/m.exec(last)?.[1];
  const copies = [...last.matchAll(/^COPY --from=\S+ (\S+) (\S+)\s*$/gm)].map((m) => ({
    from: posix.resolve(buildWorkdir, m[1]),
    to: posix.resolve(workdir, m[2]),
  }));
  return { workdir, cmd: cmdLine ? (JSON.parse(cmdLine) as string[]) : [], healthcheck: /^HEALTHCHECK (?!NONE)/m.test(last), copies, buildWorkdir };
}

/** The repository file that ends up at `imagePath` in the final image, through a COPY of the build stage's output. */
function repositoryFileFor(imagePath: string): string | undefined {
  const stage = finalStage();
  for (const copy of stage.copies) {
    if (imagePath === copy.to || imagePath.startsWith(`${copy.to}/`)) {
      const inBuild = copy.from + imagePath.slice(copy.to.length);
      return posix.relative(stage.buildWorkdir, inBuild);
    }
  }
  return undefined;
}

function commandOf(service: ComposeService): string[] {
  const command = service.command ?? finalStage().cmd;
  return typeof command === 'string' ? command.split(/\s+/) : command;
}

function environmentNames(service: ComposeService): string[] {
  const env = service.environment ?? {};
  return Array.isArray(env) ? env.map((e) => e.split('=')[0]) : Object.keys(env);
}

/** A service's environment as the validator would see it (compose `${VAR:-default}` and `${VAR:?msg}` left as text). */
function environmentOf(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.split('=')[0], e.slice(e.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
}

function envExampleNames(file: string): string[] {
  return read(file)
    .split('\n')
    .map((line) => /^\s*([A-Za-z_][A-Za-z0-9_]*)=/.exec(line)?.[1])
    .filter((n): n is string => !!n);
}

describe('docker-compose.yml, Dockerfile, .env.example and README against the build and the config validator', () => {
  it('has the app services of the production topology: api (2 replicas), worker, migrate', () => {
    expect(appServices.map(([name]) => name).sort()).toEqual(['api', 'migrate', 'worker']);
  });

  it.each(appServices.map(([name, s]) => [name, s] as const))('%s runs a file the build produces, where the image puts it', (_name, service) => {
    expect(service.entrypoint).toBeUndefined();
    const [binary, script] = commandOf(service);
    expect(binary).toBe('node');
    const stage = finalStage();
    const repoFile = repositoryFileFor(posix.resolve(stage.workdir, script));
    expect(repoFile).toMatch(/^dist\//);
    expect([repoFile, existsSync(join(root, repoFile!))]).toEqual([repoFile, true]);
  });

  it('runs the API, the worker and the migrations with the commands the package scripts use', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    const run = (name: string) => commandOf(compose.services[name]).join(' ');
    expect(run('api')).toBe(scripts.start);
    expect(run('worker')).toBe(scripts['start:worker']);
    expect(scripts['migration:run']).toContain(run('migrate'));
  });

  it.each(appServices.map(([name, s]) => [name, s] as const))('%s sets only variables the config validator knows', (_name, service) => {
    const names = environmentNames(service);
    const files = [service.env_file ?? []].flat().map((f) => (typeof f === 'string' ? f : f.path));
    for (const file of files) names.push(...envExampleNames(file));
    expect(names.filter((n) => !known.has(n))).toEqual([]);
  });

  it('gives the image HTTP healthcheck only to services that serve HTTP (the worker and the migrations do not)', () => {
    expect(finalStage().healthcheck).toBe(true);
    for (const [name, service] of appServices) {
      const servesHttp = commandOf(service)[1] === finalStage().cmd[1];
      expect([name, servesHttp || service.healthcheck?.disable === true || service.healthcheck?.test !== undefined]).toEqual([name, true]);
    }
  });

  it('puts the shipped nginx front (deploy/nginx/registry.conf.template) before the API replicas, which publish no port of their own', () => {
    const nginx = compose.services.nginx;
    expect(nginx?.image).toMatch(/^nginx:/);
    // The official image renders /etc/nginx/templates/*.template with envsubst into conf.d/.
    const mounts = (nginx.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}${v.read_only ? ':ro' : ''}`));
    const template = mounts.map((m) => m.split(':')).find(([source]) => source === './deploy/nginx/registry.conf.template');
    expect(template?.[1]).toMatch(/^\/etc\/nginx\/templates\/[^/]+\.conf\.template$/);
    expect(existsSync(join(root, 'deploy/nginx/registry.conf.template'))).toBe(true);
    // It sets exactly the variables the template uses, and points at the API service on the app's port.
    const used = [...new Set([...read('deploy/nginx/registry.conf.template').matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]))].sort();
    expect(environmentNames(nginx).sort()).toEqual(used);
    const env = nginx.environment as Record<string, string>;
    const appPort = environmentOf(compose.services.api).PORT ?? String(parseEnvironment({}).app.port);
    expect(env.REGISTRY_API).toBe(`api:${appPort}`);
    expect(String(env.REGISTRY_LISTEN)).toMatch(/^\d+$/);
    expect((nginx.ports ?? []).map(String)).toEqual([`3000:${env.REGISTRY_LISTEN}`]);
    const dependsOn = Array.isArray(nginx.depends_on) ? nginx.depends_on : Object.keys(nginx.depends_on ?? {});
    expect(dependsOn).toContain('api');
    // Clients reach the replicas through nginx only (BLOB_OFFLOAD=x-accel answers are empty without it).
    expect(compose.services.api.ports ?? []).toEqual([]);
  });

  it('.env.example lists every variable the validator knows, and only those', () => {
    const names = envExampleNames('.env.example');
    expect(names.filter((n) => !known.has(n))).toEqual([]);
    expect([...known].filter((n) => !names.includes(n))).toEqual([]);
    expect(names.length).toBe(new Set(names).size);
  });

  it("README's configuration table names every variable the validator knows, and only those", () => {
    const readme = read('README.md');
    const section = readme.slice(readme.indexOf('\n## Configuration'), readme.indexOf('\n## ', readme.indexOf('\n## Configuration') + 1));
    const tableRows = section.split('\n').filter((line) => line.startsWith('| `'));
    const named = new Set(tableRows.flatMap((row) => [...row.split('|')[1].matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1])));
    expect([...known].filter((n) => !named.has(n))).toEqual([]);
    expect([...named].filter((n) => !known.has(n))).toEqual([]);
  });
});
