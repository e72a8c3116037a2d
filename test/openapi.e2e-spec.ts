/**
 * The OpenAPI document and Swagger UI (SPEC sections 4 and 5): the document served at /api/docs-json is a
 * valid OpenAPI document, lists every account and admin route with its auth requirement plus the registry
 * token and pull routes, and Swagger UI at /api/docs renders the registry operations in a real headless
 * Chromium, whose Authorize dialog takes a PRIVATE-TOKEN that "Try it out" then sends.
 * Artifacts in test-artifacts/: openapi.json, swagger-ui.png (the whole page), swagger-ui-registries.png.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { chromiumUnavailableReason, launchChromium } from './support/chromium.js';
import { startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';

type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete' | 'head';

interface Operation {
  operationId?: string;
  summary?: string;
  parameters?: { name: string; in: string; required?: boolean }[];
  responses?: Record<string, unknown>;
  security?: Record<string, string[]>[];
}

interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Partial<Record<HttpMethod, Operation>>>;
  security?: Record<string, string[]>[];
  components?: { securitySchemes?: Record<string, { type: string; in?: string; name?: string; scheme?: string }> };
}

/** SPEC section 4: account endpoints (GitLab's paths), all behind a personal access token. */
const ACCOUNT_ROUTES: [HttpMethod, string][] = [
  ['get', '/api/v4/groups'],
  ['post', '/api/v4/groups'],
  ['get', '/api/v4/groups/{id}'],
  ['delete', '/api/v4/groups/{id}'],
  ['get', '/api/v4/users'],
  ['post', '/api/v4/users'],
  ['post', '/api/v4/groups/{id}/members'],
  ['put', '/api/v4/groups/{id}/members/{user_id}'],
  ['delete', '/api/v4/groups/{id}/members/{user_id}'],
  ['post', '/api/v4/users/{id}/personal_access_tokens'],
  ['get', '/api/v4/user/personal_access_tokens'],
  ['post', '/api/v4/user/personal_access_tokens'],
  ['delete', '/api/v4/personal_access_tokens/{id}'],
  ['post', '/api/v4/groups/{id}/deploy_tokens'],
  ['get', '/api/v4/user'],
];

/** SPEC section 5: GitLab's container virtual registry API, all behind a personal access token. */
const REGISTRY_ROUTES: [HttpMethod, string][] = [
  ['get', '/api/v4/groups/{id}/-/virtual_registries/container/registries'],
  ['post', '/api/v4/groups/{id}/-/virtual_registries/container/registries'],
  ['get', '/api/v4/virtual_registries/container/registries/{id}'],
  ['patch', '/api/v4/virtual_registries/container/registries/{id}'],
  ['delete', '/api/v4/virtual_registries/container/registries/{id}'],
  ['delete', '/api/v4/virtual_registries/container/registries/{id}/cache'],
  ['get', '/api/v4/groups/{id}/-/virtual_registries/container/upstreams'],
  ['post', '/api/v4/groups/{id}/-/virtual_registries/container/upstreams/test'],
  ['get', '/api/v4/virtual_registries/container/registries/{id}/upstreams'],
  ['post', '/api/v4/virtual_registries/container/registries/{id}/upstreams'],
  ['get', '/api/v4/virtual_registries/container/upstreams/{id}'],
  ['patch', '/api/v4/virtual_registries/container/upstreams/{id}'],
  ['delete', '/api/v4/virtual_registries/container/upstreams/{id}'],
  ['post', '/api/v4/virtual_registries/container/upstreams/{id}/test'],
  ['delete', '/api/v4/virtual_registries/container/upstreams/{id}/cache'],
  ['post', '/api/v4/virtual_registries/container/registry_upstreams'],
  ['patch', '/api/v4/virtual_registries/container/registry_upstreams/{id}'],
  ['delete', '/api/v4/virtual_registries/container/registry_upstreams/{id}'],
  ['get', '/api/v4/virtual_registries/container/upstreams/{id}/cache_entries'],
  // SPEC writes the wildcard `*id`; OpenAPI has no wildcard, so it is one path parameter.
  ['delete', '/api/v4/virtual_registries/container/cache_entries/{id}'],
];

/** SPEC sections 3 and 4: the token endpoint and the registry API, which clients reach without a PAT. */
const REGISTRY_CLIENT_ROUTES: [HttpMethod, string][] = [
  ['get', '/jwt/auth'],
  ['post', '/jwt/auth'],
  ['get', '/v2'],
];

const ADMIN_SCHEMES = ['private-token', 'bearer'];

/** The run's artifacts (gitignored): the served document and the Swagger UI screenshot. */
const ARTIFACTS = 'test-artifacts';

/**
 * `SwaggerParser.validate()` (@apidevtools/swagger-parser: OpenAPI schema plus its semantic checks) in a plain
 * Node process: the library is CommonJS requiring an ESM-only dependency, which Node 20 loads natively but
 * jest's module runtime cannot (STACK-NOTES, "Jest on Node 20 cannot require() them").
 */
async function validateOpenApi(doc: unknown): Promise<{ valid: true } | { valid: false; message: string }> {
  const script = `
    import SwaggerParser from '@apidevtools/swagger-parser';
    let text = '';
    for await (const chunk of process.stdin) text += chunk;
    try {
      await SwaggerParser.validate(structuredClone(JSON.parse(text)));
      process.stdout.write(JSON.stringify({ valid: true }));
    } catch (error) {
      process.stdout.write(JSON.stringify({ valid: false, message: String(error?.message ?? error) }));
    }`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(JSON.stringify(doc));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0 || !stdout) throw new Error(`the OpenAPI validator process failed (exit ${code}): ${stderr}`);
  return JSON.parse(stdout) as { valid: true } | { valid: false; message: string };
}

/** Route identity ignores parameter names: `{id}`, `{user_id}` and `{path}` all become `{}`. */
function routeShape(path: string): string {
  return path.replace(/\{[^}]*\}/g, '{}').replace(/\/$/, '');
}

function findOperation(doc: OpenApiDocument, method: HttpMethod, path: string): { path: string; operation: Operation } | undefined {
  const shape = routeShape(path);
  for (const [candidate, item] of Object.entries(doc.paths)) {
    const operation = item[method];
    if (operation && routeShape(candidate) === shape) return { path: candidate, operation };
  }
  return undefined;
}

function securitySchemesOf(doc: OpenApiDocument, operation: Operation): string[] {
  return (operation.security ?? doc.security ?? []).flatMap((requirement) => Object.keys(requirement));
}

describe('OpenAPI document and Swagger UI', () => {
  let testApp: TestApp;
  let doc: OpenApiDocument;

  beforeAll(async () => {
    testApp = await startTestApp();
    const res = await fetch(`${testApp.url}/api/docs-json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    doc = (await res.json()) as OpenApiDocument;
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, 'openapi.json'), `${JSON.stringify(doc, null, 2)}\n`);
  });

  afterAll(async () => {
    await testApp?.close();
  });

  it('validates against the OpenAPI schema', async () => {
    expect(doc.openapi).toMatch(/^3\./);
    await expect(validateOpenApi(doc)).resolves.toEqual({ valid: true });
    // The check is not vacuous: the same document with an operation that lacks `responses` is refused.
    const broken = structuredClone(doc);
    delete broken.paths['/api/v4/user'].get!.responses;
    await expect(validateOpenApi(broken)).resolves.toMatchObject({ valid: false, message: expect.stringMatching(/responses/) });
  });

  // swagger-parser checks OpenAPI 3 documents against the JSON schema only ("We don't (yet) support validating
  // against the OpenAPI spec"), so the spec's own rules on path templates and operation ids are checked here.
  it('declares exactly the path parameters of each path template, all required (OpenAPI 3 "Path Templating")', () => {
    const mismatches: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      for (const [method, operation] of Object.entries(item) as [HttpMethod, Operation][]) {
        const declared = (operation.parameters ?? []).filter((p) => p.in === 'path');
        const names = declared.map((p) => p.name).sort();
        const optional = declared.filter((p) => p.required !== true).map((p) => p.name);
        if (JSON.stringify(names) !== JSON.stringify(templated) || optional.length) {
          mismatches.push(
            `${method.toUpperCase()} ${path}: template {${templated.join('},{')}} but path parameters [${names.join(', ')}]${optional.length ? `, not required: ${optional.join(', ')}` : ''}`,
          );
        }
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('gives every operation a unique operationId, a summary and a documented response', () => {
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item) as [HttpMethod, Operation][]) {
        const where = `${method.toUpperCase()} ${path}`;
        if (!operation.operationId || seen.has(operation.operationId)) problems.push(`${where}: operationId ${operation.operationId ?? 'missing'} not unique`);
        if (operation.operationId) seen.add(operation.operationId);
        if (!operation.summary) problems.push(`${where}: no summary`);
        if (!Object.keys(operation.responses ?? {}).length) problems.push(`${where}: no responses`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('declares the PRIVATE-TOKEN, bearer and basic security schemes', () => {
    expect(doc.components?.securitySchemes).toMatchObject({
      'private-token': { type: 'apiKey', in: 'header', name: 'PRIVATE-TOKEN' },
      bearer: { type: 'http', scheme: 'bearer' },
      basic: { type: 'http', scheme: 'basic' },
    });
  });

  it('contains every account and admin route of SPEC sections 4 and 5, each requiring a personal access token', () => {
    const report = [...ACCOUNT_ROUTES, ...REGISTRY_ROUTES].map(([method, path]) => {
      const found = findOperation(doc, method, path);
      if (!found) return `${method.toUpperCase()} ${path}: missing`;
      const schemes = securitySchemesOf(doc, found.operation);
      const admin = schemes.filter((s) => ADMIN_SCHEMES.includes(s));
      return `${method.toUpperCase()} ${path}: ${admin.length ? `secured by ${admin.join(', ')}` : `NO private-token/bearer security (has [${schemes.join(', ')}])`}`;
    });
    expect(report.filter((line) => !line.includes(': secured by '))).toEqual([]);
  });

  it('documents both admin auth schemes (PRIVATE-TOKEN header and Authorization: Bearer) on the registry routes', () => {
    for (const [method, path] of REGISTRY_ROUTES) {
      const found = findOperation(doc, method, path);
      expect(found && securitySchemesOf(doc, found.operation).sort()).toEqual([...ADMIN_SCHEMES].sort());
    }
  });

  it('contains the registry token endpoint and the /v2 registry API', () => {
    const missing = REGISTRY_CLIENT_ROUTES.filter(([method, path]) => !findOperation(doc, method, path)).map(([m, p]) => `${m} ${p}`);
    expect(missing).toEqual([]);
    // GET /jwt/auth takes HTTP Basic (username + PAT or deploy token).
    expect(securitySchemesOf(doc, findOperation(doc, 'get', '/jwt/auth')!.operation)).toContain('basic');
    // The pull API (manifests, blobs, tags, referrers under /v2/virtual_registries/...), GET and HEAD, with a registry JWT.
    const pull = Object.entries(doc.paths).filter(([path]) => path.startsWith('/v2/virtual_registries/'));
    expect(pull.length).toBeGreaterThan(0);
    for (const method of ['get', 'head'] as const) {
      const operations = pull.map(([, item]) => item[method]).filter((op): op is Operation => op !== undefined);
      expect(operations.length).toBeGreaterThan(0);
      for (const operation of operations) expect(securitySchemesOf(doc, operation)).toContain('bearer');
    }
  });

  const unavailable = chromiumUnavailableReason();
  if (unavailable) process.stderr.write(`openapi e2e: Swagger UI browser test skipped: ${unavailable}\n`);
  const browserDescribe = unavailable ? describe.skip : describe;

  browserDescribe(`Swagger UI in headless Chromium${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
    let browser: Browser;

    beforeAll(async () => {
      browser = await launchChromium();
    });

    afterAll(async () => {
      await browser?.close();
    });

    it('renders the registry operations and an Authorize button whose PRIVATE-TOKEN "Try it out" sends', async () => {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => pageErrors.push(error.message));

      const response = await page.goto(`${testApp.url}/api/docs`, { waitUntil: 'load' });
      expect(response?.status()).toBe(200);

      // Swagger UI fetches the document, then renders one `.opblock` per operation.
      await page.locator('.opblock').first().waitFor({ state: 'visible', timeout: 30_000 });
      await expect(page.locator('.info .title').innerText()).resolves.toContain('Container Virtual Registry');

      // Every registry operation of SPEC section 5, under the path the document gives it.
      const registryOps = REGISTRY_ROUTES.map(([method, path]) => [method, findOperation(doc, method, path)?.path ?? path] as const);
      for (const [method, path] of registryOps) {
        const block = page.locator(`.opblock.opblock-${method}`).filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });
        await expect(block.count()).resolves.toBe(1);
        await expect(block.isVisible()).resolves.toBe(true);
        // Swagger UI inserts zero-width spaces after each `/` of the displayed path.
        const shown = (await block.locator('.opblock-summary-path').innerText()).replace(/\u200b/g, '');
        expect(shown).toBe(path);
      }

      await page.screenshot({ path: join(ARTIFACTS, 'swagger-ui.png'), fullPage: true });
      // And the registry operations at readable size.
      const registryTag = page.locator('.opblock-tag-section').filter({ has: page.locator('h3.opblock-tag', { hasText: 'Container virtual registries' }) });
      await registryTag.screenshot({ path: join(ARTIFACTS, 'swagger-ui-registries.png') });

      // Authorize: the dialog offers PRIVATE-TOKEN; after entering the token, "Try it out" on GET /api/v4/user sends it.
      const authorize = page.locator('.auth-wrapper button.authorize');
      await expect(authorize.isVisible()).resolves.toBe(true);
      await authorize.click();
      const dialog = page.locator('.dialog-ux .modal-ux');
      await dialog.waitFor({ state: 'visible' });
      const privateTokenForm = dialog.locator('.auth-container').filter({ hasText: 'private-token' });
      await expect(privateTokenForm.innerText()).resolves.toContain('PRIVATE-TOKEN');
      await privateTokenForm.locator('input').fill(TEST_ADMIN_TOKEN);
      await privateTokenForm.locator('button.authorize').click();
      // Once authorised, the form shows the scheme as set and offers Logout instead of Authorize.
      await privateTokenForm.locator('button', { hasText: 'Logout' }).waitFor({ state: 'visible' });
      await expect(privateTokenForm.locator('input').count()).resolves.toBe(0);
      await dialog.locator('button.close-modal').click();
      await dialog.waitFor({ state: 'hidden' });

      const whoAmI = page.locator('.opblock.opblock-get').filter({ has: page.locator('.opblock-summary-path[data-path="/api/v4/user"]') });
      await whoAmI.locator('.opblock-summary-control').click();
      await whoAmI.locator('button.try-out__btn').click();
      const apiResponse = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v4/user' && r.request().method() === 'GET');
      await whoAmI.locator('button.execute').click();
      const sent = await apiResponse;
      expect(sent.request().headers()['private-token']).toBe(TEST_ADMIN_TOKEN);
      expect(sent.status()).toBe(200);
      await expect(sent.json()).resolves.toMatchObject({ username: 'root', is_admin: true });
      await whoAmI.locator('.live-responses-table .response-col_status').first().waitFor({ state: 'visible' });

      expect(pageErrors).toEqual([]);
      await page.close();
    });
  });
});
