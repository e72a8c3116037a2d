/**
 * A small client for the admin REST API in e2e tests: JSON requests with a personal access token, and
 * helpers that create groups, users with a role in a group, and their tokens through the API itself.
 */
import { TEST_ADMIN_TOKEN } from './test-app.js';
import { waitFor } from './eventually.js';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  /** The raw body text (what a secret-leak check scans). */
  text: string;
}

export type Role = 'guest' | 'reporter' | 'developer' | 'maintainer' | 'owner';

export const ACCESS_LEVEL: Readonly<Record<Role, number>> = { guest: 10, reporter: 20, developer: 30, maintainer: 40, owner: 50 };

export class AdminApi {
  /** Every response body seen, for tests that scan all answers (e.g. for leaked secrets). */
  readonly transcript: { method: string; path: string; status: number; text: string; headers: string }[] = [];

  constructor(
    readonly baseUrl: string,
    readonly token: string = TEST_ADMIN_TOKEN,
  ) {}

  as(token: string): AdminApi {
    const api = new AdminApi(this.baseUrl, token);
    (api as { transcript: AdminApi['transcript'] }).transcript = this.transcript;
    return api;
  }

  async request<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> {
    const init: RequestInit = { method, headers: { 'private-token': this.token, accept: 'application/json', ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    const res = await fetch(`${this.baseUrl}${path}`, init);
    const text = await res.text();
    let parsed: unknown = text;
    if (text && (res.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(text);
    this.transcript.push({ method, path, status: res.status, text, headers: JSON.stringify([...res.headers]) });
    return { status: res.status, headers: res.headers, body: parsed as T, text };
  }

  get<T = any>(path: string) {
    return this.request<T>('GET', path);
  }

  post<T = any>(path: string, body?: unknown) {
    return this.request<T>('POST', path, body);
  }

  patch<T = any>(path: string, body?: unknown) {
    return this.request<T>('PATCH', path, body);
  }

  delete<T = any>(path: string) {
    return this.request<T>('DELETE', path);
  }

  /** Asserts the status, with the body in the failure message. */
  async expect<T = any>(status: number, method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const res = await this.request<T>(method, path, body);
    if (res.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${res.status}: ${res.text}`);
    return res;
  }

  async createGroup(path: string): Promise<{ id: number; path: string }> {
    return (await this.expect(201, 'POST', '/api/v4/groups', { name: path, path })).body;
  }

  /** A user with an `api` token, member of `groupId` with `role` (or of no group). Returns the token. */
  async createUserToken(username: string, membership?: { groupId: number; role: Role }, scopes: string[] = ['api']): Promise<string> {
    const user = (await this.expect(201, 'POST', '/api/v4/users', { username, email: `${username}@example.test` })).body as { id: number };
    if (membership) {
      await this.expect(201, 'POST', `/api/v4/groups/${membership.groupId}/members`, {
        user_id: user.id,
        access_level: ACCESS_LEVEL[membership.role],
      });
    }
    const pat = await this.expect(201, 'POST', `/api/v4/users/${user.id}/personal_access_tokens`, { name: `${username}-token`, scopes });
    return (pat.body as { token: string }).token;
  }
}

/** Polls until `check` returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  return (await waitFor('a condition of the test', check, { timeoutMs, intervalMs: 50 })) as T;
}
