/**
 * Issue 5, acceptance 4 (second half), 6 and 7: the pull path under a misbehaving upstream and hostile
 * input, and its memory use on a very large blob.
 * - an upstream answering 500 or 429 (or hanging) after a tag's validity window: the cached copy is served;
 * - random paths and headers (fast-check) against the running app with a valid token: never a 5xx
 *   (seeded from the clock; FC_SEED=<n> replays a run), plus the cases it found, pinned as plain tests;
 * - a 1 GiB blob streamed through a miss: the RSS of the app, run in its own process, grows by less than 256 MiB.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { DIST, processEnv, spawnAppProcess, stopAppProcess, waitForOutput } from './support/app-process.js';
import { rawRequest, streamDownload } from './support/blob-download.js';
import { backdateTagCheck, metricValue } from './support/cache-observation.js';
import { pushLargeBlob } from './support/large-blob.js';
import { startFaultyUpstream, type FaultyUpstream } from './support/faulty-upstream.js';
import { buildDockerImage, pushImage, sha256Digest, type ImageManifestFixture } from './support/image-fixtures.js';
import { realServices } from './support/services.js';
import { startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './support/test-app.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { createVirtualRegistry, pullToken, registryFetch, type VirtualRegistry } from './support/virtual-registry.js';

const canRun = realServices.hasBinary('docker-registry');
const suite = canRun ? describe : describe.skip;
const reason = canRun ? '' : ' (skipped: docker-registry is not installed; bash .ci/install-packages.sh)';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: { code: string }[] };
  return body.errors?.[0]?.code;
}

suite(`pull path robustness${reason}`, () => {
  let app: TestApp;
  let upstream: UpstreamRegistry;
  let faulty: FaultyUpstream;
  let image: ImageManifestFixture;
  let moving1: ImageManifestFixture;
  let moving2: ImageManifestFixture;
  let vr: VirtualRegistry;

  const backdate = (path: string) => backdateTagCheck(app, path);

  beforeAll(async () => {
    upstream = await startUpstreamRegistry();
    faulty = await startFaultyUpstream(upstream.url);
    image = await buildDockerImage({ seed: 'robust-stale' });
    moving1 = await buildDockerImage({ seed: 'robust-moving-1' });
    moving2 = await buildDockerImage({ seed: 'robust-moving-2' });
    await pushImage(upstream.url, 'library/stale', 'latest', image);
    await pushImage(upstream.url, 'library/moving', 'latest', moving1);
    // a short header timeout so a hanging upstream is given up on quickly
    // every failure mode below must reach the upstream, one after the other: no circuit breaker
    // (it is tested in upstream-economy.e2e-spec.ts)
    app = await startTestApp({ UPSTREAM_HEADERS_TIMEOUT_MS: '1500', UPSTREAM_BREAKER_FAILURES: '1000' });
    vr = await createVirtualRegistry(app, [{ url: faulty.url }]);
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await faulty?.close();
    await upstream?.close();
  });

  afterEach(() => faulty?.forward());

  // The app runs in a child process of its own (the built dist/src/main.js, as in production): its RSS is
  // not mixed with jest's, ts-jest's or the in-process test apps' memory.
  describe('memory', () => {
    it('streams a 1 GiB blob through a miss with the app process RSS growing by less than 256 MiB', async () => {
      // generated and uploaded by a child process too
      const layer = await pushLargeBlob(upstream.url, 'team/huge', GiB, 'robust-1gib');
      const dataDir = mkdtempSync(join(tmpdir(), 'cvr-rss-'));
      const proc = spawnAppProcess(
        DIST.api,
        processEnv({ DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info', INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN, UPSTREAM_ALLOW_PRIVATE: 'true' }),
      );
      try {
        await waitForOutput(proc, 'listening on http://', 90_000);
        const appUrl = /listening on (http:\/\/[0-9.]+:\d+)/.exec(proc.stdout())![1];
        const vrHuge = await createVirtualRegistry({ url: appUrl }, [{ url: upstream.url }]);
        const token = await pullToken({ url: appUrl }, vrHuge, 'team/huge');

        const rss = () => residentBytes(proc.pid!);
        const baseline = rss();
        let peak = baseline;
        const sampler = setInterval(() => {
          peak = Math.max(peak, rss());
        }, 100);
        let download;
        try {
          // the client hashes the body as it streams (nothing is buffered on this side either)
          download = await streamDownload(appUrl, `/v2/virtual_registries/containers/${vrHuge.registryId}/team/huge/blobs/${layer.digest}`, {
            headers: { authorization: `Bearer ${token}` },
            timeoutMs: 180_000,
          });
        } finally {
          clearInterval(sampler);
        }
        peak = Math.max(peak, rss());
        expect(download.status).toBe(200);
        expect(download.complete).toBe(true);
        expect(download.received).toBe(layer.size);
        expect(download.digest).toBe(layer.digest);
        const growthMiB = Math.round((peak - baseline) / MiB);
        expect({ baselineMiB: Math.round(baseline / MiB), growthMiB, under256: growthMiB < 256 }).toEqual({
          baselineMiB: Math.round(baseline / MiB),
          growthMiB,
          under256: true,
        });
      } finally {
        await stopAppProcess(proc);
        rmSync(dataDir, { recursive: true, force: true });
      }
    }, 240_000);
  });

  describe('stale content is served when the upstream fails after the validity window', () => {
    beforeAll(async () => {
      for (const path of ['manifests/latest', ...[image.config, ...image.layers].map((b) => `blobs/${b.digest}`)]) {
        const res = await registryFetch(app, vr, 'library/stale', path);
        expect([path, res.status]).toEqual([path, 200]);
        await res.arrayBuffer();
      }
    });

    const failures: [string, Parameters<FaultyUpstream['set']>[0]][] = [
      ['500', { kind: 'status', status: 500 }],
      ['429 with Retry-After', { kind: 'status', status: 429, retryAfterSeconds: 60 }],
      ['a hang (no answer within the header timeout)', { kind: 'hang' }],
    ];
    it.each(failures)(
      'upstream answering %s: the stale tag, its digest and its blobs are served; uncached content is 503/504',
      async (_label, mode) => {
        await backdate('/library/stale/manifests/latest');
        const staleBefore = await metricValue(app, 'registry_cache_requests_total', { result: 'stale' });
        const seenBefore = faulty.requests.length;
        faulty.set(mode);

        const byTag = await registryFetch(app, vr, 'library/stale', 'manifests/latest');
        expect(byTag.status).toBe(200);
        expect(byTag.headers.get('docker-content-digest')).toBe(image.digest);
        expect(byTag.headers.get('content-type')).toBe(image.mediaType);
        expect(Buffer.from(await byTag.arrayBuffer()).equals(image.manifest)).toBe(true);
        // the tag was revalidated (so the failure was met), and the failure was counted as a stale serve
        const reached = faulty.requests.slice(seenBefore).filter((r) => r.path === '/v2/library/stale/manifests/latest');
        expect(reached.length).toBeGreaterThanOrEqual(1);
        expect(reached.every((r) => r.handling === mode.kind)).toBe(true);
        expect(await metricValue(app, 'registry_cache_requests_total', { result: 'stale' })).toBeGreaterThan(staleBefore);

        const byDigest = await registryFetch(app, vr, 'library/stale', `manifests/${image.digest}`);
        expect(byDigest.status).toBe(200);
        expect(Buffer.from(await byDigest.arrayBuffer()).equals(image.manifest)).toBe(true);
        const layer = await registryFetch(app, vr, 'library/stale', `blobs/${image.layers[1].digest}`);
        expect(layer.status).toBe(200);
        expect(sha256Digest(Buffer.from(await layer.arrayBuffer()))).toBe(image.layers[1].digest);

        const uncached = await registryFetch(app, vr, 'library/never-pulled', 'manifests/latest');
        expect(mode.kind === 'hang' ? [503, 504] : [503]).toContain(uncached.status);
        expect(await errorCode(uncached)).toBe('UNAVAILABLE');

        // the stale entry was not marked as checked: once the upstream is back, the tag is revalidated again
        faulty.forward();
        const mark = faulty.requests.length;
        const recovered = await registryFetch(app, vr, 'library/stale', 'manifests/latest');
        expect(recovered.status).toBe(200);
        await recovered.arrayBuffer();
        expect(faulty.requests.slice(mark).map((r) => `${r.method} ${r.path}`)).toContain('HEAD /v2/library/stale/manifests/latest');
      },
      30_000,
    );

    it('a tag that moved upstream but whose new manifest cannot be fetched (GET 500): the old copy is served', async () => {
      // its own upstream row: the 429 above paused GETs to the suite's upstream for its Retry-After (60 s)
      const vr = await createVirtualRegistry(app, [{ url: faulty.url }]);
      const first = await registryFetch(app, vr, 'library/moving', 'manifests/latest');
      expect(first.headers.get('docker-content-digest')).toBe(moving1.digest);
      await first.arrayBuffer();
      await pushImage(upstream.url, 'library/moving', 'latest', moving2);
      await backdate('/library/moving/manifests/latest');
      faulty.set({ kind: 'status', status: 500 }, { method: 'GET', path: /\/manifests\// });

      const res = await registryFetch(app, vr, 'library/moving', 'manifests/latest');
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(moving1.digest);
      expect(Buffer.from(await res.arrayBuffer()).equals(moving1.manifest)).toBe(true);

      faulty.forward();
      const updated = await registryFetch(app, vr, 'library/moving', 'manifests/latest');
      expect(updated.status).toBe(200);
      expect(updated.headers.get('docker-content-digest')).toBe(moving2.digest);
      await updated.arrayBuffer();
    });
  });

  describe('hostile paths and headers (fast-check)', () => {
    it('answers 400 DIGEST_INVALID to digests of an algorithm it does not store (sha512, sha384), for manifests as for blobs', async () => {
      const direct = await createVirtualRegistry(app, [{ url: upstream.url }]);
      const token = await pullToken(app, direct, 'library/stale');
      const cases = [
        `manifests/sha512:${'a0'.repeat(64)}`,
        `blobs/sha512:${'a0'.repeat(64)}`,
        `manifests/sha384:${'b'.repeat(96)}`,
        `blobs/sha384:${'b'.repeat(96)}`,
      ];
      const answers: string[] = [];
      for (const tail of cases) {
        for (const method of ['GET', 'HEAD']) {
          const res = await rawRequest(app.url, method, `/v2/virtual_registries/containers/${direct.registryId}/library/stale/${tail}`, {
            authorization: `Bearer ${token}`,
          });
          const code = method === 'GET' ? ` ${(JSON.parse(res.body) as { errors?: { code: string }[] }).errors?.[0].code ?? res.body}` : '';
          answers.push(`${method} ${tail.slice(0, 16)} -> ${res.status}${code}`);
        }
      }
      expect(answers).toEqual(cases.flatMap((tail) => [`GET ${tail.slice(0, 16)} -> 400 DIGEST_INVALID`, `HEAD ${tail.slice(0, 16)} -> 400`]));
    });

    it('a client accepting only OCI manifests asks for a Docker schema2 tag on a cold cache: no 5xx, and what is served matches its digest', async () => {
      // Distribution 2.8 answers such a request with an on-the-fly schema1 conversion (signed, fresh JWS every time)
      const direct = await createVirtualRegistry(app, [{ url: upstream.url }]);
      const token = await pullToken(app, direct, 'library/stale');
      const answers: string[] = [];
      for (const method of ['HEAD', 'GET']) {
        const res = await registryFetch(app, direct, 'library/stale', 'manifests/latest', {
          method,
          token,
          headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
        });
        const body = Buffer.from(await res.arrayBuffer());
        const announced = res.headers.get('docker-content-digest');
        answers.push(
          `${method} ${res.status < 500 ? 'not 5xx' : res.status} ${method === 'GET' && res.status === 200 && announced !== sha256Digest(body) ? 'digest mismatch' : 'consistent'}`,
        );
      }
      expect(answers).toEqual(['HEAD not 5xx consistent', 'GET not 5xx consistent']);
    });

    it('never answers a 5xx to any path, method, Range or Accept header (300 random requests with valid tokens)', async () => {
      const direct = await createVirtualRegistry(app, [{ url: upstream.url }]);
      const tokens = new Map<string, string>();
      const defaultToken = await pullToken(app, direct, 'library/stale');
      tokens.set('library/stale', defaultToken);
      const tokenFor = async (name: string): Promise<string> => {
        const known = tokens.get(name);
        if (known) return known;
        let token = defaultToken;
        if (/^[a-z0-9][a-z0-9._/-]{0,254}$/.test(name)) {
          try {
            token = await pullToken(app, direct, name);
          } catch {
            // a name the token endpoint will not grant: the default token (for another name) is used
          }
        }
        tokens.set(name, token);
        return token;
      };

      const realDigests = [image.digest, image.config.digest, ...image.layers.map((l) => l.digest)];
      const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
      const printable = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:@!$&\'()*+,;=%/\\"<>^`{|}['.split(''));
      const junk = fc.string({ unit: printable, maxLength: 24 });
      const fragment = fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom('library', 'stale', 'alpine', 'a', 'x-y', 'a.b', 'a__b', 'team', 'sub') },
        {
          weight: 3,
          arbitrary: fc.constantFrom(
            '..',
            '.',
            '%2e%2e',
            '%2E%2e',
            '%2f',
            '%2F..',
            '%00',
            '%ff',
            '%c0%ae%c0%ae',
            '%252e%252e',
            '..;',
            '',
            'A',
            'Library',
            '-a',
            'a-',
            '_a',
            'a..b',
            'a___b',
            '%',
            '%zz',
            '\\..',
            'a%20b',
          ),
        },
        { weight: 1, arbitrary: fc.constantFrom('a'.repeat(129), 'b'.repeat(256), 'c'.repeat(4096)) },
        { weight: 2, arbitrary: fc.stringMatching(/^[a-z0-9]+([._-][a-z0-9]+)*$/).filter((s) => s.length <= 40) },
        { weight: 2, arbitrary: junk },
      );
      const name = fc.oneof(
        { weight: 3, arbitrary: fc.constant('library/stale') },
        { weight: 5, arbitrary: fc.array(fragment, { minLength: 0, maxLength: 5 }).map((parts) => parts.join('/')) },
      );
      const digest = fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...realDigests) },
        { weight: 2, arbitrary: hex(64).map((h) => `sha256:${h}`) },
        { weight: 1, arbitrary: hex(128).map((h) => `sha512:${h}`) },
        { weight: 1, arbitrary: hex(64).map((h) => `sha256:${h.toUpperCase()}`) },
        { weight: 1, arbitrary: hex(63).map((h) => `sha256:${h}`) },
        { weight: 1, arbitrary: hex(65).map((h) => `sha256:${h}`) },
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            'md5:abc',
            'sha256:',
            'sha256',
            ':',
            'sha256:..',
            'sha256+b64u:abc',
            'SHA256:' + '0'.repeat(64),
            'sha256:%2e%2e',
            'sha384:' + 'a'.repeat(96),
          ),
        },
        { weight: 1, arbitrary: junk },
      );
      const reference = fc.oneof(
        digest,
        fc.constantFrom('latest', 'v1', '1.0', 'a'.repeat(128), 'a'.repeat(129), '.hidden', '-dash', 'UPPER_ok', '%2e%2e', '..'),
        fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,40}$/),
        junk,
      );
      const tail = fc.oneof(
        { weight: 3, arbitrary: reference.map((r) => `manifests/${r}`) },
        { weight: 3, arbitrary: digest.map((d) => `blobs/${d}`) },
        { weight: 1, arbitrary: fc.constant('tags/list') },
        { weight: 1, arbitrary: digest.map((d) => `referrers/${d}`) },
        { weight: 1, arbitrary: fc.constantFrom('blobs/uploads/', 'manifests/', 'blobs/', 'tags/', 'tags/list/extra', 'referrers/', 'manifests', '') },
        { weight: 1, arbitrary: fc.tuple(fragment, junk).map(([a, b]) => `${a}/${b}`) },
      );
      const query = fc.oneof(
        { weight: 4, arbitrary: fc.constant('') },
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            '?n=5',
            '?n=0',
            '?n=-1',
            '?n=99999999999999999999',
            '?n=abc&last=',
            '?last=zzz',
            '?n=1&last=%ff',
            '?artifactType=application/x',
            '?artifactType=%00',
            '?',
            '?&&',
            '?digest=sha256:0',
          ),
        },
        { weight: 1, arbitrary: junk.map((j) => `?${j}`) },
      );
      const registryId = fc.oneof(
        { weight: 8, arbitrary: fc.constant(String(direct.registryId)) },
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            '0',
            '-1',
            '999999',
            'abc',
            '1e3',
            '99999999999999999999',
            '%31',
            '',
            '0x1',
            `${direct.registryId}.0`,
            `0${direct.registryId}`,
          ),
        },
      );
      const spelling = fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom('containers', 'container') },
        { weight: 1, arbitrary: fc.constantFrom('Containers', 'containerz', '', '..', '%63ontainers') },
      );
      const path = fc.oneof(
        { weight: 9, arbitrary: fc.record({ spelling, registryId, name, tail, query }).map((p) => ({ ...p, raw: undefined as string | undefined })) },
        {
          weight: 1,
          arbitrary: fc
            .tuple(
              fc.constantFrom(
                '/v2',
                '/v2/',
                '/v2/virtual_registries',
                '/v2/virtual_registries/',
                '/v2/virtual_registries/containers/',
                '/v2/virtual_registries/containers//',
                '/v2/..',
                '/v2/virtual_registries/containers/../../',
              ),
              junk,
            )
            .map(([prefix, rest]) => ({
              spelling: '',
              registryId: '',
              name: 'library/stale',
              tail: '',
              query: '',
              raw: `${prefix}${rest}` as string | undefined,
            })),
        },
      );
      const rangeHeader = fc.oneof(
        { weight: 3, arbitrary: fc.constant(undefined) },
        {
          weight: 3,
          arbitrary: fc
            .tuple(fc.oneof(fc.nat(400_000), fc.constantFrom(0, 2 ** 31, 2 ** 53, 2 ** 64)), fc.oneof(fc.nat(400_000), fc.constantFrom(0, 2 ** 53, 2 ** 64)))
            .map(([a, b]) => `bytes=${a}-${b}`),
        },
        {
          weight: 2,
          arbitrary: fc.constantFrom(
            'bytes=0-0',
            'bytes=-1',
            'bytes=-0',
            'bytes=5-',
            'bytes=-99999999999',
            'bytes=0-1,2-3',
            'bytes=',
            'bytes=-',
            'items=0-1',
            'bytes=a-b',
            'bytes=1-0',
            'bytes= 0-1',
            'bytes=0-1 ',
            'BYTES=0-1',
            'bytes=00000000000000000000001-2',
          ),
        },
        { weight: 1, arbitrary: junk },
      );
      const acceptHeader = fc.oneof(
        { weight: 3, arbitrary: fc.constant(undefined) },
        {
          weight: 2,
          arbitrary: fc
            .subarray([
              'application/vnd.docker.distribution.manifest.v2+json',
              'application/vnd.docker.distribution.manifest.list.v2+json',
              'application/vnd.oci.image.manifest.v1+json',
              'application/vnd.oci.image.index.v1+json',
              'application/vnd.docker.distribution.manifest.v1+prettyjws',
              'application/json',
              '*/*',
              'text/html;q=0.9',
            ])
            .map((types) => types.join(', ')),
        },
        {
          weight: 1,
          arbitrary: fc.constantFrom('', '*/*', ',,,', 'application/vnd.oci.image.manifest.v1+json;q=abc', 'x'.repeat(8000), 'application/json, '.repeat(200)),
        },
        { weight: 1, arbitrary: junk },
      );
      const auth = fc.oneof(
        { weight: 12, arbitrary: fc.constant('valid') },
        { weight: 1, arbitrary: fc.constantFrom('none', 'garbage', 'basic', 'empty-bearer') },
      );
      const method = fc.oneof(
        { weight: 10, arbitrary: fc.constantFrom('GET', 'HEAD') },
        { weight: 1, arbitrary: fc.constantFrom('PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS') },
      );

      const property = fc.asyncProperty(fc.record({ path, range: rangeHeader, accept: acceptHeader, auth, method }), async (c) => {
        const url = c.path.raw ?? `/v2/virtual_registries/${c.path.spelling}/${c.path.registryId}/${c.path.name}/${c.path.tail}${c.path.query}`;
        const headers: Record<string, string> = {};
        if (c.range !== undefined) headers.range = c.range;
        if (c.accept !== undefined) headers.accept = c.accept;
        switch (c.auth) {
          case 'valid':
            headers.authorization = `Bearer ${await tokenFor(c.path.name)}`;
            break;
          case 'garbage':
            headers.authorization = 'Bearer not.a.jwt';
            break;
          case 'basic':
            headers.authorization = `Basic ${Buffer.from(`${direct.pullUser.username}:${direct.pullUser.token}`).toString('base64')}`;
            break;
          case 'empty-bearer':
            headers.authorization = 'Bearer ';
            break;
        }
        const mark = await upstream.mark();
        const res = await rawRequest(app.url, c.method, url, headers);
        if (res.status >= 500 || res.status === 0) {
          // The one acceptable 5xx: 503 UNAVAILABLE relaying the upstream's own 5xx for this very path (Distribution
          // answers 500 UNKNOWN to GET /manifests/<digest of a blob>). Anything else is the app's fault.
          const tailPath = c.path.tail.split('?')[0];
          const upstreamFailed = (await upstream.requests(mark)).some((e) => e.status >= 500 && e.path === `/v2/${c.path.name}/${tailPath}`);
          const relayed = res.status === 503 && upstreamFailed && (c.method === 'HEAD' || res.body.includes('"UNAVAILABLE"'));
          if (!relayed) {
            throw new Error(`${c.method} ${url} with ${JSON.stringify(headers).slice(0, 400)} -> ${res.status}: ${res.body.slice(0, 500)}`);
          }
        }
      });
      await fc.assert(property, { numRuns: 300, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) });
    }, 110_000);
  });
});

/** Resident set size of a process (Linux /proc), in bytes. */
function residentBytes(pid: number): number {
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!kib) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kib[1]) * 1024;
}
