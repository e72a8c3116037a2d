/**
 * A small Docker registry token server (the `auth.token` realm of CNCF Distribution) for e2e tests.
 *
 * It issues RS256 JWTs whose header carries the signing certificate in `x5c`; Distribution 2.8 verifies
 * that chain against its `rootcertbundle` (the self-signed certificate this server writes to
 * `rootCertBundlePath`, generated with the `openssl` CLI because node:crypto cannot create certificates).
 *
 * Token requests: `GET <realm>?service=...&scope=repository:<name>:pull[,push]&scope=...` with optional HTTP
 * Basic credentials (what Docker, skopeo, podman and containerd send), and the OAuth2 form
 * `POST <realm>` with `grant_type=password` (Docker's refresh-token flow is not needed by the tests).
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Credentials the fixtures use by default for every authenticated upstream. */
export const UPSTREAM_CREDENTIALS = { username: 'upstream-user', password: 'upstream-secret' } as const;

export interface RegistryCredentials {
  username: string;
  password: string;
}

/** One `type:name:actions` resource scope from a token request. */
export interface ResourceScope {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenRequestRecord {
  /** The raw scope strings as requested (`repository:library/alpine:pull`). */
  scopes: string[];
  /** The authenticated account, or undefined for an anonymous request. */
  account?: string;
  /** 200 when a token was issued, 401 for missing/invalid credentials, 400 for a bad request. */
  status: number;
  /** What the issued token grants (empty unless status is 200). */
  granted: ResourceScope[];
}

export interface TokenServerOptions {
  /** Accepted username -> password pairs; default: {@link UPSTREAM_CREDENTIALS}. */
  users?: Record<string, string>;
  /** Issue pull-only tokens to requests without credentials (like Docker Hub); default false (401). */
  anonymousPull?: boolean;
  /** `service` (the token audience) the registry is configured with; default `upstream-registry`. */
  service?: string;
  /** `iss` claim; default `upstream-token-issuer`. */
  issuer?: string;
  /** Token lifetime in seconds, returned as `expires_in`; default 300. */
  expiresIn?: number;
  /**
   * Access policy: the actions to grant for one requested scope. Default: authenticated users get what they
   * ask for, anonymous users (when allowed) get `pull` only.
   */
  grant?: (account: string | undefined, scope: ResourceScope) => string[];
}

export interface TokenServer {
  /** The realm URL for `auth.token.realm` (`http://127.0.0.1:<port>/token`). */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly port: number;
  /** PEM file for `auth.token.rootcertbundle`. */
  readonly rootCertBundlePath: string;
  /** Tokens issued so far (since the last reset), optionally only those whose request included `scope`. */
  issuedCount(scope?: string): number;
  /** Every token request seen so far (since the last reset), issued or refused. */
  requests(): TokenRequestRecord[];
  reset(): void;
  stop(): Promise<void>;
}

/** Parses `repository:library/alpine:pull,push` (also `repository(plugin):name:pull` and `registry:catalog:*`). */
export function parseResourceScope(raw: string): ResourceScope | undefined {
  const first = raw.indexOf(':');
  const last = raw.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const type = raw.slice(0, first).replace(/\(.*\)$/, '');
  const name = raw.slice(first + 1, last);
  const actions = raw
    .slice(last + 1)
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a.length > 0);
  if (!name) return undefined;
  return { type, name, actions };
}

function base64Url(input: Buffer | string): string {
  return Buffer.from(input).toString('base64url');
}

function parseBasic(header: string | undefined): RegistryCredentials | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > 64 * 1024) throw new Error('token request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A self-signed RSA certificate made with the openssl CLI; returns the key and the DER (base64) for `x5c`. */
async function createSigningCertificate(dir: string): Promise<{ key: KeyObject; certDerBase64: string; certPath: string }> {
  const keyPath = join(dir, 'token-signing.key');
  const certPath = join(dir, 'token-signing.crt');
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-sha256',
    '-days',
    '3650',
    '-subj',
    '/CN=upstream-token-issuer',
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ]);
  const pem = await readFile(certPath, 'utf8');
  const match = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (!match) throw new Error(`openssl wrote no certificate to ${certPath}`);
  const certDerBase64 = match[1].replace(/\s+/g, '');
  const key = createPrivateKey(await readFile(keyPath, 'utf8'));
  return { key, certDerBase64, certPath };
}

export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const users = options.users ?? { [UPSTREAM_CREDENTIALS.username]: UPSTREAM_CREDENTIALS.password };
  const service = options.service ?? 'upstream-registry';
  const issuer = options.issuer ?? 'upstream-token-issuer';
  const expiresIn = options.expiresIn ?? 300;
  const grant =
    options.grant ?? ((account: string | undefined, scope: ResourceScope): string[] => (account ? scope.actions : scope.actions.filter((a) => a === 'pull')));

  const dir = await mkdtemp(join(tmpdir(), 'token-server-'));
  const { key, certDerBase64, certPath } = await createSigningCertificate(dir);
  let records: TokenRequestRecord[] = [];

  const issueToken = (account: string | undefined, access: ResourceScope[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDerBase64] };
    const claims = {
      iss: issuer,
      sub: account ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access: access.map((a) => ({ type: a.type, name: a.name, actions: a.actions })),
    };
    const signingInput = `${base64Url(JSON.stringify(header))}.${base64Url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), key);
    return `${signingInput}.${base64Url(signature)}`;
  };

  const reply = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const payload = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers });
    res.end(payload);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    if (url.pathname !== '/token') return reply(res, 404, { error: 'not found' });

    let rawScopes: string[];
    let credentials: RegistryCredentials | undefined;
    let requestedService: string | null;
    if (req.method === 'GET') {
      rawScopes = url.searchParams
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter(Boolean);
      credentials = parseBasic(req.headers.authorization);
      requestedService = url.searchParams.get('service');
    } else if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      rawScopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      requestedService = form.get('service');
      if (form.get('grant_type') !== 'password') {
        records.push({ scopes: rawScopes, status: 400, granted: [] });
        return reply(res, 400, { error: 'unsupported_grant_type' });
      }
      credentials = { username: form.get('username') ?? '', password: form.get('password') ?? '' };
    } else {
      return reply(res, 405, { error: 'method not allowed' });
    }

    if (requestedService !== null && requestedService !== service) {
      records.push({ scopes: rawScopes, status: 400, granted: [] });
      return reply(res, 400, { error: 'invalid_request', details: `unknown service ${requestedService}` });
    }
    if (credentials) {
      if (users[credentials.username] === undefined || users[credentials.username] !== credentials.password) {
        records.push({ scopes: rawScopes, account: credentials.username, status: 401, granted: [] });
        return reply(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] },
          {
            'www-authenticate': 'Basic realm="upstream-token-server"',
          },
        );
      }
    } else if (!options.anonymousPull) {
      records.push({ scopes: rawScopes, status: 401, granted: [] });
      return reply(
        res,
        401,
        { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] },
        {
          'www-authenticate': 'Basic realm="upstream-token-server"',
        },
      );
    }

    const account = credentials?.username;
    const granted: ResourceScope[] = [];
    for (const raw of rawScopes) {
      const scope = parseResourceScope(raw);
      if (!scope) continue;
      const actions = grant(account, scope).filter((a) => scope.actions.includes(a) || scope.actions.includes('*'));
      if (actions.length > 0) granted.push({ ...scope, actions });
    }
    const token = issueToken(account, granted);
    records.push({ scopes: rawScopes, account, status: 200, granted });
    return reply(res, 200, { token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) reply(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    port,
    rootCertBundlePath: certPath,
    issuedCount(scope?: string): number {
      return records.filter((r) => r.status === 200 && (scope === undefined || r.scopes.includes(scope))).length;
    },
    requests(): TokenRequestRecord[] {
      return [...records];
    },
    reset(): void {
      records = [];
    },
    async stop(): Promise<void> {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
