import fc from 'fast-check';
import { Digest } from './digest.js';
import { OciError, OciErrorCode } from './oci-error.js';
import { ManifestReference } from './reference.js';
import {
  REGISTRY_ID_MAX,
  type RegistryRequest,
  parseRegistryId,
  parseRegistryPath,
  parseRegistryRoute,
  parseRelativePath,
  parseRepositoryPath,
  relativePath,
  relativePathOf,
} from './registry-path.js';
import { RepositoryName } from './repository-name.js';

const HEX = '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';
const DIGEST = `sha256:${HEX}`;

function errorOf(fn: () => unknown): OciError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(OciError);
    return err as OciError;
  }
  throw new Error('expected an OciError');
}

describe('parseRegistryPath', () => {
  it('parses a manifest by tag', () => {
    const req = parseRegistryPath('7', 'library/alpine/manifests/latest');
    expect(req.registryId).toBe(7);
    expect(req.kind).toBe('manifest');
    expect(req.name.value).toBe('library/alpine');
    expect(req.kind === 'manifest' && req.reference).toEqual({ kind: 'tag', tag: 'latest' });
  });

  it('parses a manifest by digest', () => {
    const req = parseRegistryPath('1', `library/alpine/manifests/${DIGEST}`);
    expect(req.kind === 'manifest' && ManifestReference.toString(req.reference)).toBe(DIGEST);
    expect(req.kind === 'manifest' && req.reference.kind).toBe('digest');
  });

  it('parses blobs, tags and referrers', () => {
    const blob = parseRegistryPath('1', `a/b/c/blobs/${DIGEST}`);
    expect(blob.kind).toBe('blob');
    expect(blob.name.components).toEqual(['a', 'b', 'c']);
    expect(blob.kind === 'blob' && blob.digest.toString()).toBe(DIGEST);

    const tags = parseRegistryPath('1', 'library/alpine/tags/list');
    expect(tags).toMatchObject({ kind: 'tags', registryId: 1 });
    expect(tags.name.value).toBe('library/alpine');

    const referrers = parseRegistryPath('1', `library/alpine/referrers/${DIGEST}`);
    expect(referrers.kind === 'referrers' && referrers.digest.toString()).toBe(DIGEST);
  });

  it('reads from the right, so names may contain endpoint words', () => {
    const req = parseRegistryPath('1', `team/manifests/blobs/tags/blobs/${DIGEST}`);
    expect(req.kind).toBe('blob');
    expect(req.name.value).toBe('team/manifests/blobs/tags');
    const tags = parseRegistryPath('1', 'x/manifests/tags/list');
    expect(tags.kind).toBe('tags');
    expect(tags.name.value).toBe('x/manifests');
    const tagNamedList = parseRegistryPath('1', 'x/tags/manifests/list');
    expect(tagNamedList.kind === 'manifest' && tagNamedList.reference).toEqual({ kind: 'tag', tag: 'list' });
    expect(tagNamedList.name.value).toBe('x/tags');
  });

  it.each([
    'library/../alpine/manifests/latest',
    '../library/alpine/manifests/latest',
    'library/alpine/manifests/..',
    'library/alpine/manifests/.',
    'library/%2e%2e/alpine/manifests/latest',
    'library%2falpine/manifests/latest',
    'library%2Falpine/manifests/latest',
    'library/alpine/manifests/latest%00',
    'library/alpine/blobs/sha256%3a' + HEX,
    'library\\alpine/manifests/latest',
    'library/alpine\u0000/manifests/latest',
    'library/alpine/manifests/late\nst',
    'library//alpine/manifests/latest',
    '/library/alpine/manifests/latest',
    'library/alpine/manifests/latest/',
    'library/alpine/manifests/',
    '',
    `${'a/'.repeat(300)}manifests/latest`,
  ])('refuses traversal or smuggling %j with NAME_INVALID', (remainder) => {
    const err = errorOf(() => parseRegistryPath('1', remainder));
    expect(err.code).toBe(OciErrorCode.NAME_INVALID);
    expect(err.status).toBe(400);
  });

  it('refuses traversal with NAME_INVALID even when the id is bad too', () => {
    expect(errorOf(() => parseRegistryPath('abc', 'a/../b/manifests/latest')).code).toBe(OciErrorCode.NAME_INVALID);
  });

  it.each([
    ['Library/alpine/manifests/latest', OciErrorCode.NAME_INVALID],
    ['library/al:pine/manifests/latest', OciErrorCode.NAME_INVALID],
    ['manifests/latest', OciErrorCode.NAME_INVALID],
    ['library/alpine/manifests/bad tag', OciErrorCode.TAG_INVALID],
    ['library/alpine/manifests/.hidden', OciErrorCode.TAG_INVALID],
    ['library/alpine/manifests/sha256:abc', OciErrorCode.DIGEST_INVALID],
    ['library/alpine/blobs/latest', OciErrorCode.DIGEST_INVALID],
    [`library/alpine/blobs/${DIGEST.toUpperCase()}`, OciErrorCode.DIGEST_INVALID],
    ['library/alpine/referrers/latest', OciErrorCode.DIGEST_INVALID],
    ['library/alpine', OciErrorCode.NAME_UNKNOWN],
    ['alpine', OciErrorCode.NAME_UNKNOWN],
    ['library/alpine/tags/all', OciErrorCode.NAME_UNKNOWN],
    ['library/alpine/Manifests/latest', OciErrorCode.NAME_UNKNOWN],
    ['library/alpine/blobs/uploads', OciErrorCode.DIGEST_INVALID],
  ])('%j -> %s', (remainder, code) => {
    const err = errorOf(() => parseRegistryPath('1', remainder));
    expect(err.code).toBe(code);
    expect(err.status).toBeGreaterThanOrEqual(400);
    expect(err.status).toBeLessThan(500);
  });
});

describe('parseRegistryId', () => {
  it.each([
    ['1', 1],
    ['42', 42],
    [String(REGISTRY_ID_MAX), REGISTRY_ID_MAX],
  ])('accepts %j', (value, id) => {
    expect(parseRegistryId(value)).toBe(id);
  });

  it.each(['0', '-1', '01', '1.0', '1e3', ' 1', '1 ', 'abc', '', String(REGISTRY_ID_MAX + 1), '99999999999', '0x10'])(
    'answers %j with NAME_UNKNOWN 404, like a missing registry',
    (value) => {
      const err = errorOf(() => parseRegistryId(value));
      expect(err.code).toBe(OciErrorCode.NAME_UNKNOWN);
      expect(err.status).toBe(404);
    },
  );
});

describe('parseRegistryRoute', () => {
  it('splits the id from the rest', () => {
    const req = parseRegistryRoute('12/library/alpine/manifests/latest');
    expect(req.registryId).toBe(12);
    expect(req.name.value).toBe('library/alpine');
  });

  it.each([
    ['12', OciErrorCode.NAME_UNKNOWN],
    ['x/library/alpine/manifests/latest', OciErrorCode.NAME_UNKNOWN],
    ['12/', OciErrorCode.NAME_INVALID],
    ['..', OciErrorCode.NAME_INVALID],
    ['', OciErrorCode.NAME_INVALID],
  ])('%j -> %s', (path, code) => {
    expect(errorOf(() => parseRegistryRoute(path)).code).toBe(code);
  });
});

describe('relativePath', () => {
  const name = RepositoryName.parse('library/alpine');

  it('builds the cache-entry forms', () => {
    expect(relativePath(name, 'manifest', 'latest')).toBe('/library/alpine/manifests/latest');
    expect(relativePath('library/alpine', 'manifest', ManifestReference.tag('3.20'))).toBe('/library/alpine/manifests/3.20');
    expect(relativePath(name, 'manifest', Digest.parse(DIGEST))).toBe(`/library/alpine/manifests/${DIGEST}`);
    expect(relativePath(name, 'manifest', DIGEST)).toBe(`/library/alpine/manifests/${DIGEST}`);
    expect(relativePath(name, 'blob', DIGEST)).toBe(`/library/alpine/blobs/${DIGEST}`);
    expect(relativePath(name, 'blob', Digest.parse(DIGEST))).toBe(`/library/alpine/blobs/${DIGEST}`);
    expect(relativePath(name, 'referrers', DIGEST)).toBe(`/library/alpine/referrers/${DIGEST}`);
    expect(relativePath(name, 'tags')).toBe('/library/alpine/tags/list');
  });

  it('validates its inputs', () => {
    expect(errorOf(() => relativePath('../etc', 'manifest', 'latest')).code).toBe(OciErrorCode.NAME_INVALID);
    expect(errorOf(() => relativePath(name, 'manifest', '../x')).code).toBe(OciErrorCode.TAG_INVALID);
    expect(errorOf(() => relativePath(name, 'blob', 'latest')).code).toBe(OciErrorCode.DIGEST_INVALID);
    expect(errorOf(() => relativePath(name, 'manifest', 'sha256:xyz')).code).toBe(OciErrorCode.DIGEST_INVALID);
    expect(() => relativePath(name, 'blob', ManifestReference.tag('latest') as unknown as string)).toThrow(OciError);
    expect(() => relativePath(name, 'tags', 'x' as never)).toThrow(TypeError);
    expect(() => relativePath(name, 'blob', undefined as unknown as string)).toThrow(TypeError);
  });

  it('round-trips through parseRelativePath', () => {
    for (const path of [
      '/library/alpine/manifests/latest',
      `/library/alpine/manifests/${DIGEST}`,
      `/a/b/c/blobs/${DIGEST}`,
      '/library/alpine/tags/list',
      `/library/alpine/referrers/${DIGEST}`,
    ]) {
      expect(relativePathOf(parseRelativePath(path))).toBe(path);
    }
    expect(errorOf(() => parseRelativePath('library/alpine/manifests/latest')).code).toBe(OciErrorCode.NAME_INVALID);
    expect(errorOf(() => parseRelativePath('//library/alpine/manifests/latest')).code).toBe(OciErrorCode.NAME_INVALID);
  });
});

describe('registry path parser (property)', () => {
  const hex64 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 });
  const fragment = fc.oneof(
    fc.constantFrom(
      'library',
      'alpine',
      'a',
      'A',
      '0',
      'x-y',
      'x__y',
      'x.y',
      '.',
      '..',
      '...',
      '-',
      '_',
      '__',
      ':',
      ' ',
      '?',
      '#',
      '@',
      '%',
      '%2e',
      '%2e%2e',
      '%2f',
      '%2F',
      '%00',
      '%5c',
      '\\',
      '\u0000',
      '\n',
      '\u00e9',
      '\ud83d\ude00',
      '/',
      '//',
      'manifests',
      'blobs',
      'tags',
      'list',
      'referrers',
      'uploads',
      'latest',
      'v1.0',
      'sha256:',
      'sha512:',
      'SHA256:',
    ),
    hex64.map((h) => `sha256:${h}`),
    hex64.map((h) => `sha512:${h}${h}`),
    fc.string({ maxLength: 8 }),
  );
  const structured = fc.array(fragment, { maxLength: 16 }).chain((parts) => fc.constantFrom(parts.join('/'), parts.join('')));
  // Mostly-valid paths with junk mixed in, so that many inputs parse and the rest fail late.
  const nameComponent = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('library', 'alpine', 'a', '0', 'x-y', 'x--y', 'x__y', 'x.y', 'manifests', 'blobs', 'tags', 'list') },
    { weight: 1, arbitrary: fragment },
  );
  const endpoint = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('manifests/latest', 'manifests/v1.0', 'manifests/_x', 'tags/list') },
    { weight: 4, arbitrary: fc.tuple(fc.constantFrom('manifests', 'blobs', 'referrers'), hex64).map(([e, h]) => `${e}/sha256:${h}`) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom('manifests', 'blobs', 'referrers', 'tags'), fragment).map(([e, f]) => `${e}/${f}`) },
    { weight: 1, arbitrary: fragment },
  );
  const nearValid = fc.tuple(fc.array(nameComponent, { minLength: 1, maxLength: 5 }), endpoint).map(([components, e]) => `${components.join('/')}/${e}`);
  const remainder = fc.oneof(
    { weight: 3, arbitrary: nearValid },
    { weight: 1, arbitrary: structured },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 600 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 80 }) },
  );
  const registryId = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: REGISTRY_ID_MAX }).map(String) },
    { weight: 1, arbitrary: fc.constantFrom('1', '0', '01', '-1', 'abc', '', '1.5', String(REGISTRY_ID_MAX), String(REGISTRY_ID_MAX + 1), '%31') },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  );

  /** A parsed request must consist of valid parts and print back to exactly the input. */
  function checkParsed(req: RegistryRequest, id: string, rest: string): void {
    expect(Number.isSafeInteger(req.registryId) && req.registryId >= 1 && req.registryId <= REGISTRY_ID_MAX).toBe(true);
    expect(String(req.registryId)).toBe(id);
    expect(RepositoryName.isValid(req.name.value)).toBe(true);
    expect(['manifest', 'blob', 'tags', 'referrers']).toContain(req.kind);
    if (req.kind === 'blob' || req.kind === 'referrers') expect(Digest.isValid(req.digest.toString())).toBe(true);
    const path = relativePathOf(req);
    expect(path).toBe(`/${rest}`);
    expect(relativePathOf(parseRelativePath(path))).toBe(path);
    expect(path.split('/')).not.toContain('..');
  }

  function checkRejected(err: unknown): void {
    if (!(err instanceof OciError)) throw err;
    expect(err.status).toBeGreaterThanOrEqual(400);
    expect(err.status).toBeLessThan(500);
    expect(JSON.parse(JSON.stringify(err)).errors[0].code).toBe(err.code);
  }

  it('parses into valid components or throws a 4xx OciError, never anything else', () => {
    let parsed = 0;
    fc.assert(
      fc.property(registryId, remainder, (id, rest) => {
        let req: RegistryRequest;
        try {
          req = parseRegistryPath(id, rest);
        } catch (err) {
          checkRejected(err);
          return;
        }
        parsed++;
        checkParsed(req, id, rest);
      }),
      { numRuns: 5000 },
    );
    // The generators must reach the success path often, or the property proves little.
    expect(parsed).toBeGreaterThan(500);
  });

  it('holds for whole routes (id included)', () => {
    fc.assert(
      fc.property(registryId, remainder, (id, rest) => {
        const route = `${id}/${rest}`;
        let req: RegistryRequest;
        try {
          req = parseRegistryRoute(route);
        } catch (err) {
          checkRejected(err);
          return;
        }
        expect(`${req.registryId}${relativePathOf(req)}`).toBe(route);
      }),
      { numRuns: 3000 },
    );
  });

  it('holds for names and references that are valid by construction', () => {
    const component = fc.stringMatching(/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/, { maxLength: 20 });
    const name = fc
      .array(component, { minLength: 1, maxLength: 6 })
      .map((c) => c.join('/'))
      .filter((n) => n.length <= 255);
    const tag = fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/);
    const endpoint = fc.oneof(
      tag.map((t) => `manifests/${t}`),
      hex64.map((h) => `manifests/sha256:${h}`),
      hex64.map((h) => `blobs/sha256:${h}`),
      hex64.map((h) => `referrers/sha256:${h}`),
      fc.constant('tags/list'),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: REGISTRY_ID_MAX }), name, endpoint, (id, n, e) => {
        const rest = `${n}/${e}`;
        const req = parseRegistryPath(String(id), rest);
        expect(req.name.value).toBe(n);
        expect(relativePathOf(req)).toBe(`/${rest}`);
      }),
      { numRuns: 1000 },
    );
  });

  it('parseRepositoryPath never throws anything but OciError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
        try {
          parseRepositoryPath(s);
        } catch (err) {
          checkRejected(err);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
